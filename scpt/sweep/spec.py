"""A sweep file in W&B's sweep format, read and checked (:func:`load_sweep`), and a trial's command line.

Format (a subset of W&B's, https://docs.wandb.ai/guides/sweeps/define-sweep-configuration)::

    name: pretrain_dscl_tau_alpha          # the study's name (default: the file's stem)
    method: grid                           # grid | random | bayes
    metric: {name: val/probe_knn, goal: maximize}
    command: [scpt, pretrain, fit, --config, configs/pretrain/restaurants.yaml, "${args}"]
    parameters:
      model.loss.init_args.temperature: {values: [0.05, 0.1, 0.2]}
      model.learning_rate: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-3}
      trainer.max_epochs: {value: 1}

``program`` with no ``command`` runs W&B's default command ``${env} ${interpreter} ${program} ${args}``.
A command's macros are whole list items, expanded as W&B's agent expands them (for parameters
``a: 1``, ``b: x``): ``${args}`` -> ``--a=1 --b=x``, ``${args_no_equals}`` -> ``--a 1 --b x``,
``${args_no_hyphens}`` -> ``a=1 b=x``, ``${args_no_boolean_flags}`` (``--flag`` for true, nothing for
false), ``${args_json}`` -> ``{"a": 1, "b": "x"}``, ``${args_json_file}`` (that JSON in a file),
``${args_append_hydra}`` -> ``+a=1``, ``${args_override_hydra}`` -> ``++a=1``, ``${program}``,
``${env}`` -> ``/usr/bin/env``, ``${interpreter}`` -> the Python that runs ``scpt sweep`` (W&B: ``python``);
``${envvar:NAME}`` inside an item is the environment variable's value.

Parameters (:class:`Parameter`): ``value`` (constant), ``values`` (categorical), or ``min``/``max`` with a
``distribution``: ``uniform``, ``q_uniform`` (``q``: the step, default 1), ``int_uniform``,
``log_uniform_values`` (log-uniform between min and max), ``log_uniform`` (``exp(X)``, X uniform in
[min, max], as W&B defines it). Without ``distribution``, ``min``/``max`` are ``int_uniform`` when both are
integers, else ``uniform`` (W&B's inference). A grid sweeps ``values``, ``int_uniform`` (every integer)
and ``q_uniform`` (every step) parameters; constants join every trial.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scpt.errors import UserError
from scpt.training.files import read_yaml

METHODS = ("grid", "random", "bayes")
GOALS = ("maximize", "minimize")
DISTRIBUTIONS = ("constant", "categorical", "uniform", "q_uniform", "int_uniform", "log_uniform", "log_uniform_values")
#: Top-level keys of a W&B sweep file; the ones scpt does not use (``project``, ``entity``, ...) are accepted.
TOP_LEVEL_KEYS = (
    "program",
    "command",
    "method",
    "metric",
    "parameters",
    "name",
    "description",
    "project",
    "entity",
    "early_terminate",
    "run_cap",
)
PARAMETER_KEYS = ("value", "values", "distribution", "min", "max", "q")
#: W&B's default command.
DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
ARG_MACROS = (
    "args",
    "args_no_equals",
    "args_no_hyphens",
    "args_no_boolean_flags",
    "args_json",
    "args_json_file",
    "args_append_hydra",
    "args_override_hydra",
)
MACROS = ("env", "interpreter", "program", *ARG_MACROS)
_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Parameter:
    """One swept (or constant) parameter: its dotted ``name`` (``model.loss.init_args.temperature``) and
    ``distribution`` (:data:`DISTRIBUTIONS`) with ``values`` (constant: one; categorical: the choices) or
    ``low``/``high`` (and ``q``, the step of ``q_uniform``)."""

    name: str
    distribution: str
    values: tuple[Scalar, ...] = ()
    low: float | None = None
    high: float | None = None
    q: float | None = None

    def grid_values(self) -> tuple[Scalar, ...] | None:
        """The values a grid visits, or ``None`` when the parameter is continuous (no grid).

        ``int_uniform`` 1..3 -> ``(1, 2, 3)``; ``q_uniform`` 0..1 with q 0.5 -> ``(0.0, 0.5, 1.0)``.
        """
        if self.distribution in ("constant", "categorical"):
            return self.values
        if self.distribution == "int_uniform":
            return tuple(range(int(self.low), int(self.high) + 1))
        if self.distribution == "q_uniform":
            steps = int(math.floor((self.high - self.low) / self.q + 1e-9))
            return tuple(round(self.low + k * self.q, 12) for k in range(steps + 1))
        return None


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep file: the study's ``name``, ``method``, the ``metric`` and its ``goal``, the
    ``parameters`` in file order, and the ``command`` template (W&B macros unexpanded)."""

    path: Path
    name: str
    method: str
    metric: str
    goal: str
    parameters: tuple[Parameter, ...]
    command: tuple[str, ...]
    program: str | None = None
    run_cap: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def swept(self) -> tuple[Parameter, ...]:
        """The parameters that vary (every one but the constants), in file order."""
        return tuple(p for p in self.parameters if p.distribution != "constant")

    @property
    def direction(self) -> str:
        """Optuna's direction: ``"maximize"`` or ``"minimize"``."""
        return self.goal

    def constants(self) -> dict[str, Scalar]:
        return {p.name: p.values[0] for p in self.parameters if p.distribution == "constant"}

    def grid(self) -> dict[str, list[Scalar]]:
        """Name -> values of each swept parameter, for a grid (the cartesian product is the grid)."""
        return {p.name: list(p.grid_values() or ()) for p in self.swept}


def _fail(path: Path, key: str, message: str) -> UserError:
    return UserError(f"{path}: {key}: {message}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _parameter(path: Path, name: str, raw: Any) -> Parameter:
    key = f"parameters.{name}"
    if not isinstance(raw, dict):
        raise _fail(path, key, f"expected a mapping with 'value', 'values' or 'min'/'max', got {raw!r}")
    if "parameters" in raw:
        raise _fail(path, key, "nested parameters are not supported; use dotted names (model.loss.init_args.alpha)")
    unknown = sorted(set(raw) - set(PARAMETER_KEYS))
    if unknown:
        raise _fail(path, key, f"unknown key(s) {unknown}; expected some of {list(PARAMETER_KEYS)}")
    distribution = raw.get("distribution")
    if "value" in raw:
        if distribution not in (None, "constant") or "values" in raw or "min" in raw or "max" in raw:
            raise _fail(path, key, "'value' (a constant) cannot be combined with values, min/max or a distribution")
        if not _is_scalar(raw["value"]):
            raise _fail(path, key + ".value", f"must be a number, string, boolean or null, got {raw['value']!r}")
        return Parameter(name, "constant", (raw["value"],))
    if "values" in raw:
        values = raw["values"]
        if distribution not in (None, "categorical"):
            raise _fail(path, key, f"'values' is categorical; distribution '{distribution}' needs min/max instead")
        if not isinstance(values, list) or not values:
            raise _fail(path, key + ".values", f"must be a non-empty list, got {values!r}")
        bad = [v for v in values if not _is_scalar(v)]
        if bad:
            raise _fail(path, key + ".values", f"each value must be a number, string, boolean or null, got {bad[0]!r}")
        if len({json.dumps(v) for v in values}) != len(values):
            raise _fail(path, key + ".values", f"repeats a value: {values}")
        return Parameter(name, "categorical", tuple(values))
    if "min" not in raw or "max" not in raw:
        raise _fail(path, key, "needs 'value', 'values', or both 'min' and 'max'")
    low, high = raw["min"], raw["max"]
    for bound, value in (("min", low), ("max", high)):
        if not _is_number(value):
            raise _fail(path, f"{key}.{bound}", f"must be a number, got {value!r}")
    if distribution is None:
        distribution = "int_uniform" if isinstance(low, int) and isinstance(high, int) else "uniform"
    if distribution not in DISTRIBUTIONS or distribution in ("constant", "categorical"):
        supported = ", ".join(d for d in DISTRIBUTIONS if d not in ("constant", "categorical"))
        raise _fail(path, key + ".distribution", f"'{distribution}' is not supported with min/max (use {supported})")
    if not low < high:
        raise _fail(path, key, f"min must be below max, got min {low}, max {high}")
    q = raw.get("q")
    if q is not None and distribution != "q_uniform":
        raise _fail(path, key + ".q", f"only q_uniform takes q, not {distribution}")
    if distribution == "q_uniform":
        q = 1.0 if q is None else q
        if not _is_number(q) or q <= 0:
            raise _fail(path, key + ".q", f"must be a positive number, got {q!r}")
    if distribution == "int_uniform" and not (isinstance(low, int) and isinstance(high, int)):
        raise _fail(path, key, f"int_uniform needs integer min and max, got {low}, {high}")
    if distribution == "log_uniform_values" and low <= 0:
        raise _fail(path, key + ".min", f"log_uniform_values needs min > 0, got {low}")
    return Parameter(name, distribution, (), low, high, q)


def _command(path: Path, raw: dict[str, Any]) -> tuple[tuple[str, ...], str | None]:
    program = raw.get("program")
    if program is not None and not isinstance(program, str):
        raise _fail(path, "program", f"must be a string (the script to run), got {program!r}")
    command = raw.get("command")
    if command is None:
        if program is None:
            raise UserError(f"{path}: needs 'program' (a script) or 'command' (a list: the command line)")
        command = list(DEFAULT_COMMAND)
    if not isinstance(command, list) or not command or not all(isinstance(c, (str, int, float)) for c in command):
        raise _fail(path, "command", f"must be a non-empty list of strings, got {command!r}")
    command = [str(item) for item in command]
    for item in command:
        if item.startswith("${") and item.endswith("}") and not item.startswith("${envvar:"):
            macro = item[2:-1]
            if macro not in MACROS:
                raise _fail(path, "command", f"unknown macro '{item}' (known: {', '.join(MACROS)}, envvar:NAME)")
            if macro == "program" and program is None:
                raise _fail(path, "command", "uses ${program} but the file sets no 'program'")
    if not any(item[2:-1] in ARG_MACROS for item in command if item.startswith("${")):
        raise _fail(path, "command", "has no ${args} (or another ${args...} macro): the trials would not differ")
    return tuple(command), program


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file.

    Raises:
        UserError: a file that is missing or not YAML, an unknown key, a parameter without values, an
            unsupported distribution, a grid over a continuous parameter (one line naming file and key).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such sweep file")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping with method, metric, parameters and program or command")
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key(s) {unknown}; a sweep file has {', '.join(TOP_LEVEL_KEYS)}")
    method = raw.get("method")
    if method not in METHODS:
        raise _fail(path, "method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    metric = raw.get("metric")
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str) or not metric["name"]:
        raise _fail(path, "metric", f"must be a mapping with 'name' (the logged metric) and 'goal', got {metric!r}")
    extra = sorted(set(metric) - {"name", "goal", "target"})
    if extra:
        raise _fail(path, "metric", f"unknown key(s) {extra}; expected name, goal (and target)")
    goal = metric.get("goal", "minimize")
    if goal not in GOALS:
        raise _fail(path, "metric.goal", f"must be maximize or minimize, got {goal!r}")
    parameters = raw.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise _fail(path, "parameters", "must be a non-empty mapping of parameter name -> spec")
    params = tuple(_parameter(path, str(name), spec) for name, spec in parameters.items())
    if all(p.distribution == "constant" for p in params):
        raise _fail(path, "parameters", "every parameter is a constant 'value': nothing to sweep")
    if method == "grid":
        for p in params:
            if p.grid_values() is None:
                raise _fail(
                    path,
                    f"parameters.{p.name}",
                    f"a grid needs 'values' (or int_uniform / q_uniform), not the continuous '{p.distribution}'",
                )
    run_cap = raw.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or isinstance(run_cap, bool) or run_cap < 1):
        raise _fail(path, "run_cap", f"must be a positive integer, got {run_cap!r}")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name):
        raise _fail(path, "name", f"must be letters, digits, '_', '-', '.' (a directory name), got {name!r}")
    command, program = _command(path, raw)
    return SweepSpec(path, name, method, metric["name"], goal, params, command, program, run_cap, raw)


# --------------------------------------------------------------------------------------------------
# The command line of a trial
# --------------------------------------------------------------------------------------------------


def macro_values(args: Mapping[str, Scalar]) -> dict[str, list[str]]:
    """The argument macros for ``args`` (name -> value, in order), as W&B's agent builds them
    (``wandb.sdk.launch.sweeps.utils.create_sweep_command_args``): values are written with ``str``.

    ``{"a": 0.5, "b": True}`` -> ``args: ["--a=0.5", "--b=True"]``, ``args_no_hyphens: ["a=0.5", "b=True"]``,
    ``args_no_equals: ["--a", "0.5", "--b", "True"]``, ``args_no_boolean_flags: ["--a=0.5", "--b"]``.
    """
    flags = [f"{name}={value}" for name, value in args.items()]
    no_booleans = []
    for name, value in args.items():
        if isinstance(value, bool):
            no_booleans += [f"--{name}"] if value else []
        else:
            no_booleans.append(f"--{name}={value}")
    return {
        "args": [f"--{flag}" for flag in flags],
        "args_no_equals": [item for name, value in args.items() for item in (f"--{name}", str(value))],
        "args_no_hyphens": flags,
        "args_no_boolean_flags": no_booleans,
        "args_json": [json.dumps(dict(args))],
        "args_append_hydra": [f"+{flag}" for flag in flags],
        "args_override_hydra": [f"++{flag}" for flag in flags],
    }


def build_command(
    spec: SweepSpec,
    args: Mapping[str, Scalar],
    args_json_file: Path | None = None,
    interpreter: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The command line of a trial with parameter values ``args`` (name -> value, in the file's order):
    the spec's command with every macro expanded (module docstring). ``${args_json_file}`` writes the
    JSON of ``args`` to ``args_json_file``."""
    environ = os.environ if environ is None else environ
    values = macro_values(args)
    values["env"] = ["/usr/bin/env"]
    values["interpreter"] = [interpreter or sys.executable]
    values["program"] = [spec.program] if spec.program else []
    if "${args_json_file}" in spec.command:
        if args_json_file is None:
            raise ValueError("the command uses ${args_json_file}: pass args_json_file")
        args_json_file.parent.mkdir(parents=True, exist_ok=True)
        args_json_file.write_text(values["args_json"][0], encoding="utf-8")
        values["args_json_file"] = [str(args_json_file)]
    line: list[str] = []
    for item in spec.command:
        item = _ENVVAR.sub(lambda m: environ.get(m.group(1), m.group(1)), item)
        if item.startswith("${") and item.endswith("}"):
            line += values.get(item[2:-1], [])
        else:
            line.append(item)
    return line


def trial_args(spec: SweepSpec, params: Mapping[str, Scalar]) -> dict[str, Scalar]:
    """Every parameter's value for a trial, in the file's order: the swept ones from ``params``, the constants."""
    constants = spec.constants()
    return {p.name: (constants[p.name] if p.name in constants else params[p.name]) for p in spec.parameters}


def format_params(params: Mapping[str, Any], names: Sequence[str] | None = None) -> str:
    """``name=value`` pairs, last dotted part only (``temperature=0.1 alpha=0.5``) unless two would clash."""
    names = list(params) if names is None else list(names)
    short = [name.rpartition(".")[2] for name in names]
    if len(set(short)) != len(short):
        short = names
    return " ".join(f"{label}={params[name]}" for label, name in zip(short, names) if name in params)


__all__ = [
    "DISTRIBUTIONS",
    "METHODS",
    "Parameter",
    "SweepSpec",
    "build_command",
    "format_params",
    "load_sweep",
    "macro_values",
    "trial_args",
]
