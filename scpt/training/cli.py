"""The Lightning CLI base of both phases (``scpt pretrain ...``, ``scpt finetune ...``).

Besides the phases' shared settings, the base turns the CLI's failures into messages a user can act
on (:class:`scpt.errors.UserError`: the key, the value, the config file and line, a "did you mean")
and cleans up after a failed run: a run directory that the failed command created, and that holds no
checkpoint and no training progress, is removed (:class:`NewPaths`); nothing that existed before is.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pickle
import re
import shutil
import warnings
import zipfile
from argparse import ArgumentError
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from jsonargparse import Namespace
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback

from scpt.errors import UserError
from scpt.training.files import corrupt_entry, read_yaml
from scpt.training.resume import continue_in_run_folder, run_folder


class EncoderCLI(LightningCLI):
    """Lightning CLI of both phases: the datamodule's tokenizer follows ``--model.encoder``, the seed
    reaches the logger next to the module's hyperparameters, and ``trainer.use_distributed_sampler``
    defaults to false: scpt's batch samplers split the data over processes themselves
    (:mod:`scpt.training.sharding`), which Lightning's ``DistributedSampler`` must not replace.

    Subclasses name themselves (:attr:`prog`, :attr:`description`: the help's first lines) and list
    their working subcommands in :meth:`subcommands`. ``fast_dev_run`` writes no checkpoint.
    """

    #: The command line that runs the CLI, as ``usage:`` shows it.
    prog = "scpt"
    #: The help's description.
    description = ""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("model.encoder", "data.encoder")
        parser.set_defaults({"trainer.use_distributed_sampler": False})
        for action in parser._actions:  # docstring markup reads badly in --help
            if isinstance(action.help, str):
                action.help = plain_text(action.help)

    def parse_arguments(self, parser: Any, args: Any) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as error:
            subcommand = next((arg for arg in args or [] if arg in self.subcommands()), None)
            sub_parser = getattr(self, "_subcommand_parsers", {}).get(subcommand, parser)
            raise UserError(explain_argument_error(str(error), option_keys(sub_parser), list(args or []))) from error

    def _parse_ckpt_path(self) -> None:
        """Lightning reads ``--ckpt_path``'s hyperparameters here; a path that is missing or not a checkpoint
        is the user's to fix, so it says so rather than failing later inside ``torch.load``."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in ("best", "last", "hpc", "registry"):
            path = Path(ckpt_path)
            if not path.is_file():
                raise UserError(f"--ckpt_path {path} does not exist")
            if not zipfile.is_zipfile(path):
                raise UserError(f"--ckpt_path {path} is not a checkpoint (not a file written by torch.save)")
            damaged = corrupt_entry(path)
            if damaged is not None:
                raise UserError(f"--ckpt_path {path} is corrupt: its entry {damaged} fails its CRC check")
        try:
            super()._parse_ckpt_path()
        except ArgumentError as error:
            raise UserError(f"--ckpt_path {ckpt_path}: its hyperparameters do not fit this command: {error}") from error
        except (pickle.UnpicklingError, UnicodeDecodeError, EOFError, RuntimeError) as error:  # inside torch.load
            raise UserError(  # torch's own text would suggest weights_only=False: scpt never loads that way
                f"--ckpt_path {ckpt_path}: cannot be read as a checkpoint with weights_only=True "
                f"({type(error).__name__}); give a .ckpt written by scpt"
            ) from None

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        subcommand = self.config.get("subcommand")
        if subcommand == "fit":  # a resumed fit continues in the checkpoint's run folder (scpt.training.resume)
            continue_in_run_folder(trainer, self.config["fit"].get("ckpt_path"))
        if trainer.fast_dev_run:  # Lightning says "checkpointing is suppressed", yet save_last still writes
            trainer.callbacks = [
                callback for callback in trainer.callbacks if not isinstance(callback, ModelCheckpoint)
            ]
        return trainer

    def before_fit(self) -> None:
        if self.trainer.logger is not None:
            self.trainer.logger.log_hyperparams({"seed_everything": self.config["fit"]["seed_everything"]})

    def after_fit(self) -> None:
        """Hand the final logged metrics to a sweep (:func:`scpt.training.trial.write_trial_result`: a no-op
        outside ``scpt sweep`` and ``wandb agent``). A subclass that overrides this calls ``super().after_fit()``."""
        if self.trainer.is_global_zero:
            from scpt.training.trial import write_trial_result

            write_trial_result(self.trainer.callback_metrics)

    def _run_subcommand(self, subcommand: str) -> None:
        new_paths = NewPaths(run_paths(self.trainer))
        try:
            super()._run_subcommand(subcommand)
        except BaseException:
            nothing_trained = subcommand != "fit" or self.trainer.global_step == 0
            if nothing_trained and self.trainer.is_global_zero:  # under DDP, one process cleans up
                new_paths.remove(keep_if_holds="*.ckpt")
            raise


class RunConfigSaver(SaveConfigCallback):
    """Saves the run's full configuration, as the CLI resolved it, in the run's folder (:func:`run_folder`:
    ``version_N`` of a CSV logger, ``<project>/<run id>`` of a W&B run), never over an existing file: a
    run resumed in its folder keeps the first ``config.yaml`` and adds ``config.1.yaml`` (then ``.2``, ...)
    beside it."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        folder = Path(trainer.strategy.broadcast(str(run_folder(trainer))))
        if trainer.is_global_zero:
            folder.mkdir(parents=True, exist_ok=True)
            path = free_path(folder / self.config_filename)
            self.parser.save(self.config, path, skip_none=False, overwrite=False, multifile=self.multifile)
            self.save_config(trainer, pl_module, stage)  # SaveConfigCallback's hook for subclasses
        self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


def free_path(path: Path) -> Path:
    """``path`` when no file is there, else the first free ``<stem>.N<suffix>`` (N = 1, 2, ...)."""
    candidate, number = path, 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}.{number}{path.suffix}")
    return candidate


def run_paths(trainer: pl.Trainer) -> list[Path]:
    """The directories a run writes to: each file logger's ``version_N``, checkpoint directories set in
    the config, and the trainer's ``default_root_dir``. Reading a logger's ``log_dir`` fixes its version."""
    paths = [Path(trainer.default_root_dir)]
    for logger in trainer.loggers:
        if type(logger).__name__ in ("CSVLogger", "TensorBoardLogger") and logger.log_dir:
            paths.append(Path(logger.log_dir))
    paths += [Path(callback.dirpath) for callback in trainer.checkpoint_callbacks if callback.dirpath]
    return paths


class NewPaths:
    """The outermost missing ancestor of each given path, recorded now, to remove after a failure.

    Only directories that did not exist when this object was made are ever removed, so whatever a user
    had (an earlier run, an existing ``runs/``) stays.
    """

    def __init__(self, paths: Iterable[Path]) -> None:
        self.roots: list[Path] = []
        for path in paths:
            path = path.absolute()
            if path.exists():
                continue
            while not path.parent.exists():
                path = path.parent
            if path not in self.roots:
                self.roots.append(path)

    def remove(self, keep_if_holds: str | None = None) -> list[Path]:
        """Remove the recorded directories that exist now (except those holding a ``keep_if_holds`` file)."""
        removed = []
        for root in self.roots:
            if not root.is_dir() or (keep_if_holds and next(root.rglob(keep_if_holds), None) is not None):
                continue
            shutil.rmtree(root, ignore_errors=True)
            removed.append(root)
        return removed


def plain_text(text: str) -> str:
    """Docstring text without reStructuredText markup: ``:func:`~a.b``` -> ``b``, double backquotes -> none."""
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def option_keys(parser: Any) -> list[str]:
    """The dotted keys (``data.batch_size``) of a parser's long options."""
    keys = {option[2:] for action in parser._actions for option in action.option_strings if option.startswith("--")}
    return sorted(keys - {"help", "config", "print_config"})


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known`` (difflib), or empty."""
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close and "." in key:  # compare the last part among keys of the same section
        section, _, leaf = key.rpartition(".")
        leaves = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == section]
        close = [f"{section}.{match}" for match in difflib.get_close_matches(leaf, leaves, n=1, cutoff=0.6)]
    return f" (did you mean '{close[0]}'?)" if close else ""


def _config_files(args: list[str]) -> list[Path]:
    files = [Path(args[i + 1]) for i, arg in enumerate(args[:-1]) if arg in ("--config", "-c")]
    files += [Path(arg.split("=", 1)[1]) for arg in args if arg.startswith("--config=")]
    return [path for path in files if path.is_file()]


def _config_tree(args: list[str]) -> Iterator[tuple[Path, str | None]]:
    """Each ``--config`` file, then those they include with ``config:`` (breadth first, each once), with its
    text (``None`` when it cannot be read as UTF-8)."""
    pending, seen = _config_files(args), set()
    while pending:
        path = pending.pop(0)
        if path.resolve() in seen or not path.is_file():
            continue
        seen.add(path.resolve())
        try:
            text: str | None = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = None
        yield path, text
        if text is not None:
            pending += [path.parent / name for name in re.findall(r"^\s*config\s*:\s*(\S+)", text, re.MULTILINE)]


def where_in_configs(key: str, args: list[str]) -> str:
    """``FILE, line N: `` where a ``--config`` file (or one it names with ``config:``) sets ``key``, or empty."""
    leaf = re.escape(key.rpartition(".")[2])
    for path, text in _config_tree(args):
        for number, line in enumerate((text or "").splitlines(), start=1):
            if re.match(rf"\s*(?:[\w.]*\.)?{leaf}\s*:", line):
                return f"{path}, line {number}: "
    return ""


def yaml_problem(path: Path) -> str | None:
    """Why ``path`` is not a YAML mapping of config keys (``FILE, line N, column M: problem``), or ``None``."""
    try:
        loaded = read_yaml(path)
    except UserError as error:
        return str(error)
    if not isinstance(loaded, dict):
        got = "nothing (an empty file)" if loaded is None else f"a {type(loaded).__name__}"
        return f"{path}: expected a mapping of config keys, got {got}"
    return None


def _config_problem(args: list[str]) -> str | None:
    """The first ``--config`` file (or one it includes with ``config:``) that is not a YAML mapping."""
    return next((problem for path, _ in _config_tree(args) if (problem := yaml_problem(path))), None)


def _class_parameters(class_path: str) -> list[str]:
    module_name, _, name = class_path.rpartition(".")
    try:
        return list(inspect.signature(getattr(importlib.import_module(module_name), name)).parameters)
    except (ImportError, AttributeError, TypeError, ValueError):
        return []


def explain_argument_error(message: str, known_keys: list[str], args: list[str]) -> str:
    """jsonargparse's parse error ``message`` as one line that names the key, the value or file, with a
    "did you mean" for an unknown key, and without the union-type listing."""
    unknown = re.search(r"unrecognized arguments: (.*)", message)
    if unknown:
        options = [token for token in unknown.group(1).split() if token.startswith("--")]
        if not options:
            return f"unexpected argument(s): {unknown.group(1).strip()}"
        parts = []
        for option in options:
            key = option.split("=", 1)[0][2:]
            parts.append(f"unknown option --{key}{did_you_mean(key, known_keys)}")
        return "; ".join(parts)
    not_accepted = re.search(r"does not accept option '([^']+)'", message)
    if not_accepted:
        key = not_accepted.group(1)
        return f"{where_in_configs(key, args)}unknown config key '{key}'{did_you_mean(key, known_keys)}"
    key_match = re.match(r'\s*Parser key "([^"]+)":', message)
    key = key_match.group(1) if key_match else None
    prefix = f"{key}: " if key else ""
    class_option = re.search(r"class_path '([\w.]+)':\s*Option '(\w+)' is not accepted", message)
    if class_option:
        class_path, option = class_option.groups()
        close = difflib.get_close_matches(option, _class_parameters(class_path), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return (
            f"{prefix}{class_path.rpartition('.')[2]} has no argument '{option}'{where_in_configs(option, args)}{hint}"
        )
    missing_path = re.search(r"Expected a path but (.+?) either not accessible or invalid", message)
    if missing_path:
        value = missing_path.group(1)
        problem = yaml_problem(Path(value)) if Path(value).is_file() else None
        if problem is not None:  # the file exists: say what is wrong with it
            return f"{prefix}{problem}"
        return f"{prefix}'{value}' is neither a config file that exists nor an importable class path"
    if "Problems parsing config" in message or "Unexpected config" in message:
        problem = _config_problem(args)
        if problem is not None:
            return problem
    rest = message[key_match.end() :] if key_match else message
    lines = [line.strip() for line in rest.splitlines() if line.strip()]
    if "Errors:" in lines:  # a union: keep the subtypes' own errors, less "Expected a <class 'NoneType'>"
        items = [line[2:] for line in lines[lines.index("Errors:") + 1 :] if line.startswith("- ")]
        items = [item for item in items if "NoneType" not in item] or items
        lines = items[:1]
    text = " ".join(lines)
    text = re.sub(r"Expected a <class '([\w.]+)'>\. Got value: (.*)$", r"expected \1, got '\2'", text)
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)
    return f"{prefix}{text}"


#: How config files and values are read: YAML through OmegaConf, so a config can reference another
#: of its values (``default_root_dir: runs/${data.dataset}``); resolved within each file.
PARSER_MODE = "omegaconf"


def parser_kwargs(cli_class: type[LightningCLI]) -> dict[str, Any]:
    """Parser settings for the main parser and every subcommand's (``fit``, ``validate``, ...): OmegaConf
    YAML, errors raised (``exit_on_error=False``) for :class:`EncoderCLI` to word them, and no abbreviated
    options (``allow_abbrev=False``: ``--model.learning_rat`` is an unknown option, not ``--model.learning_rate``)."""
    shared = {"parser_mode": PARSER_MODE, "exit_on_error": False, "allow_abbrev": False}
    main = {**shared, "prog": getattr(cli_class, "prog", "scpt")}
    if getattr(cli_class, "description", ""):
        main["description"] = cli_class.description
    return {**main, **{name: dict(shared) for name in cli_class.subcommands()}}


def build_lightning_cli(
    cli_class: type[LightningCLI],
    model: type[pl.LightningModule],
    data: type[pl.LightningDataModule],
    args: list[str],
    run: bool,
) -> LightningCLI:
    """``cli_class(model, data)`` on ``args`` (``run=False``: parse and instantiate only).

    When ``args`` start with a subcommand, only that subcommand's parser is built (each takes seconds:
    the trainer's, the module's and the datamodule's signatures), which halves ``fit --help``.
    """
    if run and args and args[0] in cli_class.subcommands():
        cli_class = _with_subcommands(cli_class, args[0])
    with warnings.catch_warnings():
        # scpt always passes args explicitly; Lightning warns when sys.argv differs.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return cli_class(
            model,
            data,
            args=args,
            run=run,
            subclass_mode_model=False,
            subclass_mode_data=False,
            save_config_callback=RunConfigSaver,
            parser_kwargs=parser_kwargs(cli_class),
        )


def _with_subcommands(cli_class: type[LightningCLI], *names: str) -> type[LightningCLI]:
    """``cli_class`` offering only the subcommands ``names`` (same settings, same hooks)."""
    kept = {name: skip for name, skip in cli_class.subcommands().items() if name in names}

    class Selected(cli_class):  # type: ignore[misc, valid-type]
        @staticmethod
        def subcommands() -> dict[str, set[str]]:
            return kept

    Selected.__name__ = Selected.__qualname__ = cli_class.__name__
    return Selected


class _Parsed(Exception):
    """Carries a parsed configuration out of a CLI that stops before instantiating anything."""

    def __init__(self, config: Namespace) -> None:
        super().__init__("configuration parsed")
        self.config = config


def parse_lightning_config(
    cli_class: type[LightningCLI],
    model: type[pl.LightningModule],
    data: type[pl.LightningDataModule],
    args: list[str],
) -> Namespace:
    """The configuration that ``build_lightning_cli(cli_class, model, data, args, run=False)`` would use:
    every ``--config`` file and argument read, interpolated, linked and validated by the same parser,
    but nothing instantiated, seeded or loaded.

    Raises:
        UserError: the arguments do not parse (the message says why).
    """

    class ParseOnly(cli_class):  # type: ignore[misc, valid-type]
        def parse_arguments(self, parser: Any, args: Any) -> None:
            super().parse_arguments(parser, args)
            raise _Parsed(self.config)

    try:
        build_lightning_cli(ParseOnly, model, data, args, run=False)
    except _Parsed as parsed:
        return parsed.config
    raise AssertionError("unreachable: the CLI returned without parsing its arguments")  # pragma: no cover


__all__ = [
    "PARSER_MODE",
    "EncoderCLI",
    "NewPaths",
    "explain_argument_error",
    "build_lightning_cli",
    "parse_lightning_config",
    "parser_kwargs",
]
