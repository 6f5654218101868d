"""``scpt finetune``: ``seeds`` runs the multi-seed runner, anything else goes to the Lightning CLI.

Kept apart from :mod:`scpt.finetune.cli` (which the multi-seed runner builds on) so that the two
never import each other.
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    """``scpt finetune seeds ...`` (:mod:`scpt.finetune.seeds`) or ``scpt finetune {fit,validate,test,predict} ...``."""
    if argv and argv[0] == "seeds":
        from scpt.finetune.seeds import main as seeds_main

        return seeds_main(argv[1:])
    from scpt.finetune.cli import main as cli_main

    return cli_main(argv)
