"""Running a sweep's trials from an Optuna study (``scpt sweep FILE``).

The study (one per sweep, named after it) lives in an RDB storage: by default the SQLite file
``<output dir>/study.db``; a shared URL (``sqlite:///...`` on a shared disk, ``postgresql://...``) lets
several ``scpt sweep`` processes, on one machine or many, work on one sweep. The sampler follows the
file's ``method``: ``grid`` -> ``GridSampler`` over the parameters' values (each point once),
``random`` -> ``RandomSampler``, ``bayes`` -> ``TPESampler``.

**A trial** is a subprocess: the file's command with the trial's values (W&B's macros,
:func:`scpt.sweep.spec.build_command`), then the extra arguments given after ``--``, then
``--trainer.default_root_dir=D`` and ``--trainer.logger.init_args.save_dir=D`` (unless
``--no-run-dir-args``) so that the Lightning run writes into its own directory
``D = <output dir>/trial_<number>/``; its output goes to ``D/trial.log``. Its environment has
``SCPT_TRIAL_RESULT=D/result.json``, where scpt writes the run's final metrics
(:func:`scpt.training.trial.write_trial_result`), ``SCPT_TRIAL_DIR=D``, and for W&B
``WANDB_RUN_GROUP=<study>``, ``WANDB_TAGS=sweep,<study>``, ``WANDB_NAME=<study>-trial<number>``.
When a run wrote no ``result.json``, the last value of the metric in a CSV logger's ``metrics.csv``
under ``D`` is used instead. A trial **fails** (state FAIL, the last lines of its log in the user
attribute ``error``) when it exits non-zero or its metric is missing or not finite; the sweep goes on.

**Resuming**: rerunning the command loads the study: finished trials are never rerun, a grid goes on
with its unvisited points. **Killed trials** are retried through Optuna's heartbeat: each running
trial's runner records a heartbeat every ``heartbeat`` seconds (default 60); a RUNNING trial whose
heartbeat is older than twice that (its runner was killed) is marked FAIL when any runner starts its
next trial, and ``RetryHeartbeatStaleTrialCallback`` enqueues a copy with the same parameters (at
most :data:`MAX_RETRY` times per point), which the next free runner takes first. A trial stopped with
Ctrl-C is failed and re-enqueued at once. Failed trials are not retried unless ``--retry-failed``.

**Grid without duplicates**: Optuna's ``GridSampler`` gives trial number k < (grid size) the grid point
k, later trials a random unvisited one, so concurrent runners rarely meet; when two trials do get the
same point, the one with the higher number is marked PRUNED (user attribute ``duplicate_of``) and its
runner asks again. A runner stops when every point is finished or being run.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shlex
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scpt.errors import UserError
from scpt.sweep.spec import Scalar, SweepSpec, build_command, format_params, trial_args
from scpt.training.files import format_duration
from scpt.training.trial import RESULT_ENV, read_trial_result

if TYPE_CHECKING:
    import optuna

#: How many times a killed trial's point is retried.
MAX_RETRY = 3
#: Lines of a failed trial's log kept in its ``error`` attribute.
ERROR_LINES = 20
#: The arguments that put a Lightning run into the trial's directory (``{dir}`` is replaced).
RUN_DIR_ARGS = ("--trainer.default_root_dir={dir}", "--trainer.logger.init_args.save_dir={dir}")


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep (the command line's options, :mod:`scpt.sweep.commands`)."""

    output_dir: Path
    study_name: str
    storage: str
    workers: int = 1
    max_trials: int | None = None
    timeout: float | None = None
    heartbeat: int = 60
    run_dir_args: bool = True
    retry_failed: bool = False
    seed: int | None = None
    #: Arguments appended to every trial's command (``scpt sweep FILE -- ARGS``), before the run-directory ones.
    extra_args: tuple[str, ...] = ()


def default_output_dir(study_name: str) -> Path:
    """``runs/sweeps/<study name>``."""
    return Path("runs") / "sweeps" / study_name


def default_storage(output_dir: Path) -> str:
    """The SQLite file ``<output_dir>/study.db`` as a storage URL (absolute path)."""
    return f"sqlite:///{(output_dir / 'study.db').absolute()}"


def quiet_optuna() -> None:
    """Silence Optuna's notes that do not concern a user here: experimental features (heartbeats, the
    retry callback), heartbeats used outside ``Study.optimize`` (scpt records them itself), INFO logs."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def make_storage(url: str, heartbeat: int | None = 60) -> optuna.storages.RDBStorage:
    """An RDB storage at ``url`` with heartbeats every ``heartbeat`` seconds (grace: twice that) and the
    retry of stale trials; SQLite waits up to 60 s for a lock held by another process."""
    import optuna

    quiet_optuna()

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if heartbeat:
        kwargs = {
            "heartbeat_interval": heartbeat,
            "grace_period": 2 * heartbeat,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
        }
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except Exception as error:  # sqlalchemy's errors (bad URL, missing driver, unreachable server)
            if "IntegrityError" in type(error).__name__ + str(error) and attempt < 4:
                time.sleep(0.5)  # another process is creating the same database's tables right now
                continue
            raise UserError(f"--storage {url}: cannot open it: {str(error).splitlines()[0]}") from error
    raise AssertionError("unreachable")  # pragma: no cover


def make_sampler(spec: SweepSpec, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """``GridSampler`` over :meth:`SweepSpec.grid`, ``RandomSampler`` or ``TPESampler``, per ``spec.method``."""
    import optuna

    if spec.method == "grid":

        class Grid(optuna.samplers.GridSampler):
            """``GridSampler`` that leaves stopping to the runner (its ``after_trial`` calls ``Study.stop``,
            which works only inside ``Study.optimize``; :class:`SweepRunner` asks and tells itself)."""

            def after_trial(self, *args: Any, **kwargs: Any) -> None:
                return None

        return Grid(spec.grid(), seed=seed)
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


@contextlib.contextmanager
def _creation_lock(url: str) -> Iterator[None]:
    """An exclusive lock on ``<file>.lock`` next to a SQLite storage (POSIX), else nothing."""
    if not url.startswith("sqlite:///"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = Path(url.removeprefix("sqlite:///") + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_study(spec: SweepSpec, options: SweepOptions) -> optuna.Study:
    """Create the sweep's study, or load it when it exists (resume); record the sweep's settings in it."""
    import optuna

    with _creation_lock(options.storage):  # two processes creating one SQLite file's tables at once collide
        storage = make_storage(options.storage, options.heartbeat)
        study = optuna.create_study(
            study_name=options.study_name,
            storage=storage,
            sampler=make_sampler(spec, options.seed),
            direction=spec.direction,
            load_if_exists=True,
        )
    if study.direction.name.lower() != spec.goal:
        raise UserError(
            f"study '{options.study_name}' in {options.storage} was created to {study.direction.name.lower()}, "
            f"but {spec.path} asks to {spec.goal}: choose another --study-name"
        )
    recorded = study.user_attrs.get("sweep")
    settings = sweep_settings(spec, options)
    if recorded is None:
        study.set_user_attr("sweep", settings)
    else:
        for key in ("parameters", "metric", "extra_args"):
            if recorded.get(key, []) != settings[key]:
                raise UserError(
                    f"study '{options.study_name}' in {options.storage} was run with other {key} "
                    f"({recorded.get(key)}, now {settings[key]}): choose another --study-name or --output-dir"
                )
    return study


def sweep_settings(spec: SweepSpec, options: SweepOptions) -> dict[str, Any]:
    """What the study records about its sweep (for ``scpt sweep report``)."""
    return {
        "file": str(spec.path),
        "method": spec.method,
        "metric": spec.metric,
        "goal": spec.goal,
        "parameters": [p.name for p in spec.swept],
        "grid": spec.grid() if spec.method == "grid" else None,
        "output_dir": str(options.output_dir),
        "extra_args": list(options.extra_args),
    }


def suggest(trial: optuna.Trial, spec: SweepSpec) -> dict[str, Scalar]:
    """The trial's values of the swept parameters, drawn by the study's sampler (name -> value)."""
    params: dict[str, Scalar] = {}
    for p in spec.swept:
        if spec.method == "grid" or p.distribution == "categorical":
            params[p.name] = trial.suggest_categorical(p.name, list(p.grid_values() or ()))
        elif p.distribution == "int_uniform":
            params[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high))
        elif p.distribution == "uniform":
            params[p.name] = trial.suggest_float(p.name, p.low, p.high)
        elif p.distribution == "q_uniform":
            params[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.q)
        elif p.distribution == "log_uniform_values":
            params[p.name] = trial.suggest_float(p.name, p.low, p.high, log=True)
        elif p.distribution == "log_uniform":  # W&B: exp(X), X uniform in [min, max]
            params[p.name] = trial.suggest_float(p.name, math.exp(p.low), math.exp(p.high), log=True)
        else:  # pragma: no cover - load_sweep admits only the above
            raise AssertionError(p.distribution)
    return params


def point_key(spec: SweepSpec, params: dict[str, Any]) -> tuple[str, ...] | None:
    """A trial's grid point as comparable text, or ``None`` when it lacks a swept parameter."""
    if any(p.name not in params for p in spec.swept):
        return None
    return tuple(json.dumps(params[p.name]) for p in spec.swept)


def metrics_from_csv(directory: Path) -> dict[str, float]:
    """The last value of every column of the newest ``metrics.csv`` under ``directory`` (a CSV logger's)."""
    files = sorted(directory.rglob("metrics.csv"), key=lambda path: path.stat().st_mtime)
    if not files:
        return {}
    last: dict[str, float] = {}
    with files[-1].open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if key and value not in (None, ""):
                    try:
                        last[key] = float(value)
                    except ValueError:
                        continue
    return last


def log_tail(path: Path, lines: int = ERROR_LINES) -> str:
    """The last ``lines`` non-empty lines of a log file (empty when there is none)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])[-4000:]


class SweepRunner:
    """Runs the trials of ``spec`` in ``study`` with ``options.workers`` threads, each running one trial
    subprocess at a time, until the grid is done, ``max_trials`` trials were started, the ``timeout``
    passed, or the file's ``run_cap`` trials exist.

    Args:
        spec: the sweep file.
        study: its study (:func:`open_study`).
        options: the run's settings.
        write: where progress lines go (default: ``print``, flushed).
    """

    def __init__(
        self,
        spec: SweepSpec,
        study: optuna.Study,
        options: SweepOptions,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.spec, self.study, self.options = spec, study, options
        self.write = write if write is not None else (lambda line: print(line, flush=True))
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.started = 0
        self.finished: list[int] = []
        self.deadline = None if options.timeout is None else time.monotonic() + options.timeout

    # ------------------------------------------------------------------ choosing trials

    def _grid_has_work(self) -> bool:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return True
        taken = {
            point_key(self.spec, t.params)
            for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL)
        }
        grid = self.spec.grid()
        return len(taken - {None}) < math.prod(len(values) for values in grid.values())

    def _may_start(self) -> bool:
        if self.stop.is_set():
            return False
        if self.options.max_trials is not None and self.started >= self.options.max_trials:
            return False
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return False
        if self.spec.run_cap is not None:
            from optuna.trial import TrialState

            counted = [t for t in self.study.get_trials(deepcopy=False) if t.state != TrialState.PRUNED]
            if len(counted) >= self.spec.run_cap:
                return False
        return self.spec.method != "grid" or self._grid_has_work()

    def next_trial(self) -> tuple[optuna.Trial, dict[str, Scalar]] | None:
        """The next trial to run and its swept values, or ``None`` when this runner is done."""
        import optuna
        from optuna.trial import TrialState

        with self.lock:
            while True:
                optuna.storages.fail_stale_trials(self.study)
                if not self._may_start():
                    return None
                trial = self.study.ask()
                params = suggest(trial, self.spec)
                if self.spec.method == "grid":
                    key = point_key(self.spec, params)
                    twins = [
                        t.number
                        for t in self.study.get_trials(
                            deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
                        )
                        if t.number < trial.number and point_key(self.spec, t.params) == key
                    ]
                    if twins:  # another runner took this point first
                        trial.set_user_attr("duplicate_of", twins[0])
                        self.study.tell(trial, state=TrialState.PRUNED)
                        continue
                self.started += 1
                return trial, params

    # ------------------------------------------------------------------ running one

    def trial_dir(self, number: int) -> Path:
        return self.options.output_dir / f"trial_{number}"

    def command(self, params: dict[str, Scalar], trial_dir: Path) -> list[str]:
        """The trial's command line: the file's command with its values, then the run-directory arguments."""
        line = build_command(self.spec, trial_args(self.spec, params), args_json_file=trial_dir / "args.json")
        line += list(self.options.extra_args)
        if self.options.run_dir_args:
            line += [arg.format(dir=trial_dir) for arg in RUN_DIR_ARGS]
        return line

    def environment(self, number: int, trial_dir: Path) -> dict[str, str]:
        name = self.options.study_name
        return {
            **os.environ,
            RESULT_ENV: str(trial_dir / "result.json"),
            "SCPT_TRIAL_DIR": str(trial_dir),
            "SCPT_TRIAL_NUMBER": str(number),
            "WANDB_RUN_GROUP": name,
            "WANDB_TAGS": f"sweep,{name}",
            "WANDB_NAME": f"{name}-trial{number}",
            "WANDB_JOB_TYPE": "sweep-trial",
        }

    def run_trial(self, trial: optuna.Trial, params: dict[str, Scalar]) -> None:
        """Run one trial's subprocess and record its outcome in the study."""
        from optuna.trial import TrialState

        number = trial.number
        trial_dir = self.trial_dir(number).absolute()
        trial_dir.mkdir(parents=True, exist_ok=True)
        result_file = trial_dir / "result.json"
        result_file.unlink(missing_ok=True)
        line = self.command(params, trial_dir)
        log_file = trial_dir / "trial.log"
        trial.set_user_attr("trial_dir", str(trial_dir))
        trial.set_user_attr("command", shlex.join(line))
        retried = self.study._storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
        self.write(
            f"[sweep] trial {number} started: {format_params(params)}"
            + (f" (retry of trial {retried})" if retried is not None else "")
            + f" | log: {log_file}"
        )
        started = time.monotonic()
        storage = self.study._storage
        with log_file.open("a", encoding="utf-8") as log:
            log.write(f"$ {shlex.join(line)}\n")
            log.flush()
            try:
                process = subprocess.Popen(
                    line, stdout=log, stderr=subprocess.STDOUT, env=self.environment(number, trial_dir)
                )
            except OSError as error:
                process = None
                log.write(f"cannot start the command: {error}\n")
            last_beat = 0.0
            while process is not None:
                now = time.monotonic()
                if self.options.heartbeat and now - last_beat >= self.options.heartbeat:
                    storage.record_heartbeat(trial._trial_id)
                    last_beat = now
                if self.stop.is_set():
                    process.terminate()
                    try:
                        process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
                    break
                try:
                    process.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    continue
        seconds = time.monotonic() - started
        trial.set_user_attr("seconds", round(seconds, 1))
        if self.stop.is_set() and (process is None or process.returncode != 0):
            trial.set_user_attr("error", "interrupted (Ctrl-C); enqueued again")
            self.study.tell(trial, state=TrialState.FAIL)
            requeue(self.study, self.study._storage.get_trial(trial._trial_id))
            self.write(f"[sweep] trial {number} interrupted after {format_duration(seconds)}; it will be retried")
            return
        value, error = self._outcome(process, result_file, trial_dir, log_file)
        if error is not None:
            trial.set_user_attr("error", error)
            self.study.tell(trial, state=TrialState.FAIL)
            first = error.splitlines()[0] if error else "failed"
            self.write(
                f"[sweep] trial {number} FAILED in {format_duration(seconds)}: {format_params(params)} | {first}"
            )
        else:
            self.study.tell(trial, value)
            self.write(
                f"[sweep] trial {number} done in {format_duration(seconds)}: {format_params(params)} -> "
                f"{self.spec.metric} = {value:.6g}"
            )
        with self.lock:
            self.finished.append(number)

    def _outcome(
        self, process: subprocess.Popen | None, result_file: Path, trial_dir: Path, log_file: Path
    ) -> tuple[float | None, str | None]:
        """The trial's metric, or ``(None, error)``: the exit status or the missing metric, then its log's tail."""
        tail = log_tail(log_file)
        if process is None:
            return None, f"the command could not start\n{tail}"
        if process.returncode != 0:
            return None, f"exit status {process.returncode}\n{tail}"
        metrics: dict[str, float | None] = {}
        source = str(result_file)
        if result_file.is_file():
            try:
                metrics = read_trial_result(result_file)
            except (ValueError, OSError) as error:
                return None, f"{result_file}: unreadable: {error}\n{tail}"
        else:
            metrics, source = dict(metrics_from_csv(trial_dir)), f"metrics.csv under {trial_dir}"
        value = metrics.get(self.spec.metric)
        if value is None or not math.isfinite(value):
            found = "missing" if self.spec.metric not in metrics else f"not finite ({value})"
            known = ", ".join(sorted(metrics)) or "none"
            return None, f"metric '{self.spec.metric}' {found} in {source} (metrics there: {known})\n{tail}"
        return float(value), None

    # ------------------------------------------------------------------ the loop

    def _worker(self, errors: list[BaseException]) -> None:
        try:
            while True:
                chosen = self.next_trial()
                if chosen is None:
                    return
                self.run_trial(*chosen)
        except BaseException as error:  # a bug or a storage failure: stop the others, re-raise in the main thread
            errors.append(error)
            self.stop.set()

    def run(self) -> int:
        """Run the sweep; returns the number of trials this call ran (finished or failed)."""
        if self.options.retry_failed:
            for number in requeue_failed(self.study, self.spec):
                self.write(f"[sweep] trial {number} failed before: enqueued again (--retry-failed)")
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=self._worker, args=(errors,), name=f"sweep-worker-{k}", daemon=True)
            for k in range(self.options.workers)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.5)
        except KeyboardInterrupt:
            self.stop.set()
            self.write("[sweep] interrupted: stopping the running trials (they will be retried)")
            for thread in threads:
                thread.join()
            raise
        if errors:
            raise errors[0]
        return len(self.finished)


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Enqueue a copy of ``trial`` (same parameters and grid point) as Optuna's retry callback does."""
    import optuna

    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)(study, trial)


def requeue_failed(study: optuna.Study, spec: SweepSpec) -> list[int]:
    """Enqueue a retry of every failed trial whose point has no finished, running or waiting trial."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    covered = {
        point_key(spec, t.params)
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
    }
    requeued = []
    for t in trials:
        key = point_key(spec, t.params)
        if t.state == TrialState.FAIL and key is not None and key not in covered:
            requeue(study, t)
            covered.add(key)
            requeued.append(t.number)
    return requeued


def summary_lines(study: optuna.Study, spec: SweepSpec) -> list[str]:
    """The sweep's state in a few lines: trials per state and the best trial."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    parts = [f"{count} {state}" for state, count in counts.items() if count]
    lines = [f"[sweep] study '{study.study_name}': " + (", ".join(parts) or "no trials")]
    if counts["complete"]:
        best = study.best_trial
        lines.append(
            f"[sweep] best: trial {best.number}, {spec.metric} = {best.value:.6g}: "
            f"{format_params(best.params, [p.name for p in spec.swept])}"
        )
    return lines


__all__ = [
    "SweepOptions",
    "SweepRunner",
    "default_output_dir",
    "default_storage",
    "make_storage",
    "metrics_from_csv",
    "open_study",
    "requeue_failed",
    "summary_lines",
]
