"""The package's layering (docs/design.md §1), read from the source with ``ast``.

Lowest first, a module may import from its own package and from lower layers only; packages that share
a layer are siblings and never import each other:

    scpt.losses, scpt.encoders       pure PyTorch losses; HF encoder loading
    scpt.data                        ABSA and corpus readers, the one encoding path, samplers
    scpt.training                    the base LightningModule, optimiser, CLI base, file writing
    scpt.pretrain, scpt.finetune,    the two phases, and the export of a checkpoint's encoder
    scpt.export
    scpt.pipeline, scpt.figures      both phases in sequence; the experiments' figures
    scpt.sweep                       hyper-parameter sweeps (trials run scpt commands)
    scpt.cli                         the console script

``scpt.losses`` also imports no Lightning, transformers or torchmetrics, and no other part of scpt.
Every import counts, including those inside functions (lazy imports) and under ``TYPE_CHECKING``,
and no two scpt modules may import each other, directly or through others.

The checker is tested on synthetic graphs and a synthetic source tree with planted violations, so a
green run of :func:`test_scpt_is_layered` means something.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "scpt"

#: Lowest first; the packages of one layer are independent siblings.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("scpt.losses", "scpt.encoders"),
    ("scpt.data",),
    ("scpt.training",),
    ("scpt.pretrain", "scpt.finetune", "scpt.export"),
    ("scpt.pipeline", "scpt.figures"),
    ("scpt.sweep",),
    ("scpt.cli",),
)

#: Modules every module may import (``scpt/__init__.py`` holds only the version; ``scpt.errors`` the
#: exception type of failures a user can fix, and which failures count as such).
BASE = ("scpt", "scpt.errors")

#: Third-party packages the losses must not import (they are pure PyTorch).
LOSSES_FORBIDDEN = ("lightning", "lightning_fabric", "pytorch_lightning", "torchmetrics", "transformers")

Graph = Mapping[str, Iterable[str]]


# --------------------------------------------------------------------------------------------------
# Reading the imports
# --------------------------------------------------------------------------------------------------


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module name -> the modules it imports, for every ``.py`` file under the package directory ``root``.

    Imports of the package's own modules are resolved to the module (``from scpt.data import absa``
    -> ``scpt.data.absa``; ``from scpt.losses import SupConLoss`` -> ``scpt.losses``); relative imports
    are made absolute. Other imports keep their dotted name.
    """
    files = {_module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    candidate = f"{source}.{alias.name}"
                    imported.add(candidate if candidate in files else source)
        imported.discard(module)
        graph[module] = imported
    return graph


# --------------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------------


def _owner(module: str, layers: tuple[tuple[str, ...], ...]) -> tuple[int, str] | None:
    """(layer index, package) of an scpt module, or ``None`` when no layer lists it."""
    for index, packages in enumerate(layers):
        for package in packages:
            if module == package or module.startswith(package + "."):
                return index, package
    return None


def layering_violations(
    graph: Graph, layers: tuple[tuple[str, ...], ...] = LAYERS, base: tuple[str, ...] = BASE
) -> list[str]:
    """Every import that breaks the layering or the purity of ``scpt.losses``, as readable lines."""
    problems = []
    for module, imported in sorted(graph.items()):
        if module in base:
            continue
        owner = _owner(module, layers)
        if owner is None:
            problems.append(f"{module}: not in any layer; add its package to LAYERS in tests/test_layering.py")
            continue
        layer, package = owner
        for target in sorted(imported):
            top = target.split(".")[0]
            if package == "scpt.losses" and top in LOSSES_FORBIDDEN:
                problems.append(f"{module} imports {target}: scpt.losses is pure PyTorch")
            if top != "scpt" or target in base:
                continue
            target_owner = _owner(target, layers)
            if target_owner is None or target_owner[1] == package:
                continue
            target_layer, target_package = target_owner
            if package == "scpt.losses":
                problems.append(f"{module} imports {target}: scpt.losses imports no other part of scpt")
            elif target_layer > layer:
                problems.append(f"{module} imports {target}: {package} is below {target_package}")
            elif target_layer == layer:
                problems.append(f"{module} imports {target}: {package} and {target_package} are siblings")
    return problems


def import_cycles(graph: Graph, prefix: str = "scpt") -> list[list[str]]:
    """The strongly connected components of more than one module among ``prefix`` modules (Tarjan)."""
    nodes = {module for module in graph if module == prefix or module.startswith(prefix + ".")}
    edges = {module: sorted(target for target in graph[module] if target in nodes) for module in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return sorted(cycles)


# --------------------------------------------------------------------------------------------------
# The package
# --------------------------------------------------------------------------------------------------


def test_scpt_is_layered() -> None:
    graph = import_graph(ROOT)
    assert "scpt.losses.supcon" in graph and "scpt.pipeline" in graph  # the reader found the package
    assert layering_violations(graph) == []


def test_scpt_has_no_import_cycles() -> None:
    assert import_cycles(import_graph(ROOT)) == []


# --------------------------------------------------------------------------------------------------
# The checker, on planted violations
# --------------------------------------------------------------------------------------------------

CLEAN = {
    "scpt": set(),
    "scpt.losses": {"scpt.losses.supcon"},
    "scpt.losses.supcon": {"torch", "scpt.losses.base"},
    "scpt.losses.base": {"torch"},
    "scpt.encoders": {"transformers", "torch"},
    "scpt.data.encoding": {"transformers", "scpt.encoders"},
    "scpt.training.module": {"pytorch_lightning", "scpt.encoders", "scpt.training.optim"},
    "scpt.training.optim": {"torch"},
    "scpt.pretrain.module": {"scpt.training.module", "scpt.losses", "scpt.data.encoding"},
    "scpt.finetune.module": {"scpt.training.module", "scpt.data.encoding"},
    "scpt.finetune.cli": {"scpt.finetune.module"},
    "scpt.pipeline": {"scpt.finetune.cli", "scpt.pretrain.module", "scpt.training.optim"},
    "scpt.cli": {"scpt", "scpt.pipeline"},
}


def _with(**changes: set[str]) -> dict[str, set[str]]:
    graph = {module: set(imported) for module, imported in CLEAN.items()}
    for module, imported in changes.items():
        graph.setdefault(module.replace("__", "."), set()).update(imported)
    return graph


def test_checker_accepts_a_clean_graph() -> None:
    assert layering_violations(CLEAN) == []
    assert import_cycles(CLEAN) == []


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"scpt__losses__supcon": {"pytorch_lightning.utilities"}}, "scpt.losses is pure PyTorch"),
        ({"scpt__losses__base": {"lightning"}}, "scpt.losses is pure PyTorch"),
        ({"scpt__losses__base": {"scpt.encoders"}}, "scpt.losses imports no other part of scpt"),
        ({"scpt__losses__base": {"scpt.data.encoding"}}, "scpt.losses imports no other part of scpt"),
        ({"scpt__data__encoding": {"scpt.training.module"}}, "scpt.data is below scpt.training"),
        ({"scpt__data__encoding": {"scpt.pretrain.module"}}, "scpt.data is below scpt.pretrain"),
        ({"scpt__data__encoding": {"scpt.finetune.module"}}, "scpt.data is below scpt.finetune"),
        ({"scpt__data__encoding": {"scpt.pipeline"}}, "scpt.data is below scpt.pipeline"),
        ({"scpt__pretrain__module": {"scpt.finetune.module"}}, "scpt.pretrain and scpt.finetune are siblings"),
        ({"scpt__finetune__cli": {"scpt.pretrain.module"}}, "scpt.finetune and scpt.pretrain are siblings"),
        ({"scpt__training__module": {"scpt.finetune.module"}}, "scpt.training is below scpt.finetune"),
        ({"scpt__finetune__cli": {"scpt.pipeline"}}, "scpt.finetune is below scpt.pipeline"),
        ({"scpt__finetune__cli": {"scpt.cli"}}, "scpt.finetune is below scpt.cli"),
        ({"scpt__pipeline": {"scpt.cli"}}, "scpt.pipeline is below scpt.cli"),
        ({"scpt__nowhere": {"scpt.pipeline"}}, "scpt.nowhere: not in any layer"),
    ],
)
def test_checker_reports_a_planted_violation(changes: dict[str, set[str]], expected: str) -> None:
    problems = layering_violations(_with(**changes))
    assert len(problems) == 1 and expected in problems[0], problems


def test_checker_reports_planted_cycles() -> None:
    # within one package (allowed by the layers, not as a cycle), and across three modules
    graph = _with(scpt__finetune__module={"scpt.finetune.cli"})
    assert import_cycles(graph) == [["scpt.finetune.cli", "scpt.finetune.module"]]
    graph = _with(scpt__training__optim={"scpt.training.files"}, scpt__training__files={"scpt.training.module"})
    assert import_cycles(graph) == [["scpt.training.files", "scpt.training.module", "scpt.training.optim"]]
    assert import_cycles({"scpt.a": {"scpt.b"}, "scpt.b": {"scpt.a"}, "scpt.c": {"scpt.a"}}) == [["scpt.a", "scpt.b"]]


def test_reader_resolves_imports_of_a_synthetic_tree(tmp_path: Path) -> None:
    """Relative, lazy (in a function) and ``from package import module`` imports are all seen."""
    root = tmp_path / "scpt"
    files = {
        "__init__.py": "",
        "losses/__init__.py": "from .supcon import SupConLoss\n",
        "losses/supcon.py": "import torch\n\ndef f():\n    import pytorch_lightning as pl\n",
        "data/__init__.py": "",
        "data/encoding.py": "from scpt.training import module\n",
        "training/__init__.py": "",
        "training/module.py": "from ..data.encoding import x\nfrom . import optim\n",
        "training/optim.py": "from scpt.training.module import EncoderModule\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    graph = import_graph(root)
    assert graph["scpt.losses"] == {"scpt.losses.supcon"}
    assert graph["scpt.losses.supcon"] == {"torch", "pytorch_lightning"}
    assert graph["scpt.data.encoding"] == {"scpt.training.module"}
    assert graph["scpt.training.module"] == {"scpt.data.encoding", "scpt.training.optim"}
    assert layering_violations(graph) == [
        "scpt.data.encoding imports scpt.training.module: scpt.data is below scpt.training",
        "scpt.losses.supcon imports pytorch_lightning: scpt.losses is pure PyTorch",
    ]
    assert import_cycles(graph) == [["scpt.data.encoding", "scpt.training.module", "scpt.training.optim"]]
