"""``scpt finetune seeds`` on bad input: bad seeds, a rerun with other settings, and no debris from a failed seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import needs_data
from scpt import cli
from scpt.errors import UserError
from scpt.finetune import seeds
from scpt.training.files import without_display_args

REPO = Path(__file__).resolve().parents[1]
RESTAURANTS = str(REPO / "configs" / "finetune" / "restaurants.yaml")
LAPTOPS = str(REPO / "configs" / "finetune" / "laptops.yaml")


def tree(directory: Path) -> dict[str, bytes | None]:
    """Every path under ``directory`` (relative), with a file's bytes (``None`` for a folder)."""
    return {
        path.relative_to(directory).as_posix(): (None if path.is_dir() else path.read_bytes())
        for path in sorted(directory.rglob("*"))
    }


@pytest.fixture()
def fake_training(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, list[str]]]:
    """Replace a seed's fit and test by a record of the call, and a fixed result (acc = 50 + seed)."""
    calls: list[tuple[int, list[str]]] = []

    def fake_run_seed(config_args: list[str], seed: int, run_dir: Path) -> dict[str, Any]:
        calls.append((seed, config_args))
        return {"seed": seed, "test": {"acc": 50.0 + seed}, "dev_score": 1.0, "seconds": 6.0}

    monkeypatch.setattr(seeds, "run_seed", fake_run_seed)
    return calls


def seeds_argv(output_dir: Path, *extra: str, config: str = "a.yaml", seed_list: tuple[str, ...] = ("1",)) -> list[str]:
    return ["--config", config, "--seeds", *seed_list, "--output-dir", str(output_dir), *extra]


# --- check_seeds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("accepted", [[0], [2**32 - 1], [1, 2, 3], [3, 1]])
def test_check_seeds_accepts_distinct_seeds_in_range(accepted: list[int]) -> None:
    seeds.check_seeds(accepted, "--seeds")  # no error


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([-1], "--seeds: seed -1 is out of range [0, 2**32 - 1] (0 to 4294967295)"),
        ([1, 2**32], "--seeds: seed 4294967296 is out of range [0, 2**32 - 1] (0 to 4294967295)"),
        ([1, 1, 2], "--seeds: seed 1 is repeated (each seed runs once)"),
        ([2, 1, 2], "--seeds: seed 2 is repeated (each seed runs once)"),
        ([], "--seeds: no seeds given"),
        ([1, True], "--seeds: seed True is not an integer"),
        ([1.5], "--seeds: seed 1.5 is not an integer"),
    ],
)
def test_check_seeds_refuses(bad: list[Any], message: str) -> None:
    with pytest.raises(UserError) as raised:
        seeds.check_seeds(bad, "--seeds")
    assert str(raised.value) == message


def test_check_seeds_message_starts_with_where() -> None:
    with pytest.raises(UserError, match=r"^configs/pipeline/x\.yaml: 'seeds': seed 7 is repeated"):
        seeds.check_seeds([7, 7], "configs/pipeline/x.yaml: 'seeds'")


@pytest.mark.parametrize(
    ("argv_seeds", "error"),
    [
        (("1", "1", "2"), "scpt finetune seeds: error: --seeds: seed 1 is repeated (each seed runs once)\n"),
        (("-1",), "scpt finetune seeds: error: --seeds: seed -1 is out of range [0, 2**32 - 1] (0 to 4294967295)\n"),
        (
            ("99999999999",),
            "scpt finetune seeds: error: --seeds: seed 99999999999 is out of range [0, 2**32 - 1] (0 to 4294967295)\n",
        ),
    ],
)
def test_bad_seeds_are_refused_before_anything_runs(
    argv_seeds: tuple[str, ...],
    error: str,
    tmp_path: Path,
    fake_training: list[tuple[int, list[str]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["finetune", "seeds", *seeds_argv(tmp_path / "out", seed_list=argv_seeds)]) == 2
    assert capsys.readouterr().err == error  # one line, no traceback
    assert fake_training == [] and not (tmp_path / "out").exists()


# --- settings of the seeds already in the output dir ------------------------------------------------


def test_result_records_settings_and_summary_counts_each_seed_once(
    tmp_path: Path, fake_training: list[tuple[int, list[str]]]
) -> None:
    out = tmp_path / "out"
    assert seeds.main(seeds_argv(out, "--trainer.max_epochs", "2", seed_list=("1", "3"))) == 0
    result = json.loads((out / "seed1/result.json").read_text())
    assert result["configs"] == ["a.yaml"] and result["extra_args"] == ["--trainer.max_epochs", "2"]
    assert not (out / "seed1/settings.json").exists()  # only while the seed runs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["summary"]["acc"] == {"mean": 52.0, "std": pytest.approx(1.4142135623730951), "n": 2}


@pytest.mark.parametrize(
    ("rerun_extra", "config", "now"),
    [
        (("--model.learning_rate", "0.5"), "a.yaml", "`--config a.yaml --model.learning_rate 0.5`"),
        ((), "b.yaml", "`--config b.yaml`"),
    ],
)
def test_rerun_with_other_settings_is_refused(
    rerun_extra: tuple[str, ...],
    config: str,
    now: str,
    tmp_path: Path,
    fake_training: list[tuple[int, list[str]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    assert seeds.main(seeds_argv(out)) == 0
    before = tree(out)
    capsys.readouterr()
    assert cli.main(["finetune", "seeds", *seeds_argv(out, *rerun_extra, config=config, seed_list=("2", "1"))]) == 2
    assert capsys.readouterr().err == (
        f"scpt finetune seeds: error: {out}: seed 1 ran with other settings ({out}/seed1/result.json): "
        f"recorded `--config a.yaml`, now {now}; choose another --output-dir, or remove {out}/seed1 "
        "to run the seed again\n"
    )
    assert tree(out) == before and [seed for seed, _ in fake_training] == [1]  # seed 2 did not run either


def test_rerun_differing_only_in_display_options_reuses_the_result(
    tmp_path: Path, fake_training: list[tuple[int, list[str]]], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert seeds.main(seeds_argv(out, "--trainer.enable_progress_bar", "false", "--data.limit", "8")) == 0
    result = (out / "seed1/result.json").read_bytes()
    for display in (("--trainer.enable_progress_bar=true",), ()):
        assert seeds.main(seeds_argv(out, *display, "--data.limit", "8")) == 0
    assert "seed 1: done before" in capsys.readouterr().out
    assert (out / "seed1/result.json").read_bytes() == result and len(fake_training) == 1


def test_without_display_args() -> None:
    strip = without_display_args
    assert strip(["--a", "1", "--trainer.enable_progress_bar", "false", "--b", "2"]) == ["--a", "1", "--b", "2"]
    assert strip(["--trainer.enable_progress_bar=false", "--a", "1"]) == ["--a", "1"]
    assert strip(["--trainer.enable_progress_bar", "--a", "1"]) == ["--a", "1"]  # a following option stays


def test_result_of_an_older_scpt_is_checked_against_the_summary(
    tmp_path: Path, fake_training: list[tuple[int, list[str]]], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert seeds.main(seeds_argv(out, "--data.limit", "8")) == 0
    result_file = out / "seed1/result.json"
    legacy = {k: v for k, v in json.loads(result_file.read_text()).items() if k not in ("configs", "extra_args")}
    result_file.write_text(json.dumps(legacy))  # as scpt wrote it before settings were recorded
    with pytest.raises(UserError, match=rf"seed 1 ran with other settings \({out}/summary\.json\): recorded "):
        seeds.main(seeds_argv(out, "--data.limit", "9"))
    assert seeds.main(seeds_argv(out, "--data.limit", "8")) == 0  # the summary's settings: reused
    (out / "summary.json").unlink()  # nothing records its settings: reused as it is, with a note
    assert seeds.main(seeds_argv(out, "--data.limit", "9")) == 0
    assert f"seed 1: {result_file} records no settings (an older scpt wrote it); reusing it" in capsys.readouterr().out
    assert json.loads(result_file.read_text()) == legacy and len(fake_training) == 1


def test_a_begun_seed_is_not_resumed_with_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "out"
    checkpoints = out / "seed1/restaurants/version_0/checkpoints"
    checkpoints.mkdir(parents=True)
    (out / "seed1/settings.json").write_text(json.dumps({"configs": ["a.yaml"], "extra_args": []}))
    now = {"configs": ["a.yaml"], "extra_args": ["--data.limit", "8"]}
    seeds.check_recorded_settings(out, [1], now)  # no last.ckpt: nothing to resume, it starts afresh
    (checkpoints / "last.ckpt").write_bytes(b"partial")
    with pytest.raises(UserError) as raised:
        seeds.check_recorded_settings(out, [1], now)
    assert str(raised.value).startswith(
        f"{out}: seed 1 ran with other settings ({out}/seed1/settings.json): recorded `--config a.yaml`, "
        "now `--config a.yaml --data.limit 8`;"
    )
    seeds.check_recorded_settings(out, [1], {"configs": ["a.yaml"], "extra_args": []})  # same: resumed


def test_an_unreadable_result_is_one_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "seed1").mkdir()
    (tmp_path / "seed1/result.json").write_text('{"seed": 1,')  # truncated
    with pytest.raises(UserError, match=rf"^{tmp_path}/seed1/result\.json: not a record scpt wrote \("):
        seeds.check_recorded_settings(tmp_path, [1], {"configs": ["a.yaml"], "extra_args": []})


# --- no debris from a failed seed -----------------------------------------------------------------


def test_failed_seed_removes_only_what_it_created(tmp_path: Path) -> None:
    run_dir = tmp_path / "out/seed1"
    (run_dir / "restaurants/version_0/checkpoints").mkdir(parents=True)
    (run_dir / "restaurants/version_0/metrics.csv").write_text("step\n1\n")  # an earlier attempt's
    before = tree(tmp_path)
    with pytest.raises(ValueError, match="bad value"), seeds.no_debris(run_dir, 1):
        (run_dir / "restaurants/version_0/hparams.yaml").write_text("x: 1\n")
        (run_dir / "restaurants/version_1/checkpoints").mkdir(parents=True)
        (run_dir / "settings.json").write_text("{}")
        raise ValueError("bad value")
    assert tree(tmp_path) == before


def test_failed_seed_in_a_new_output_dir_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), seeds.no_debris(tmp_path / "a/out/seed1", 1):
        (tmp_path / "a/out/seed1/restaurants/version_0").mkdir(parents=True)
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_failed_seed_that_saved_a_checkpoint_is_kept_to_resume(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "seed1"
    checkpoints = run_dir / "restaurants/version_0/checkpoints"
    with pytest.raises(SystemExit), seeds.no_debris(run_dir, 1):
        checkpoints.mkdir(parents=True)
        (run_dir / "settings.json").write_text("{}")
        (checkpoints / "last.ckpt").write_bytes(b"step 50")
        raise SystemExit(1)  # what Lightning raises on Ctrl-C
    assert sorted(tree(tmp_path)) == [
        "seed1",
        "seed1/restaurants",
        "seed1/restaurants/version_0",
        "seed1/restaurants/version_0/checkpoints",
        "seed1/restaurants/version_0/checkpoints/last.ckpt",
        "seed1/settings.json",
    ]
    assert f"seed 1: failed; {run_dir} is kept, with the checkpoints it saved; a rerun resumes from " in (
        capsys.readouterr().out
    )


def test_resumed_seed_failing_before_a_new_checkpoint_keeps_the_old_one(tmp_path: Path) -> None:
    run_dir = tmp_path / "seed1"
    (run_dir / "restaurants/version_0/checkpoints").mkdir(parents=True)
    (run_dir / "restaurants/version_0/checkpoints/last.ckpt").write_bytes(b"step 50")
    before = tree(tmp_path)
    with pytest.raises(RuntimeError), seeds.no_debris(run_dir, 1):
        (run_dir / "restaurants/version_0/confusion").mkdir()
        raise RuntimeError("out of memory")
    assert tree(tmp_path) == before


@needs_data
def test_seed_failing_on_bad_data_dir_leaves_the_output_dir_as_it_was(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    (out / "seed1").mkdir(parents=True)
    (out / "seed1/result.json").write_text(json.dumps({"seed": 1, "test": {"acc": 1.0}, "dev_score": 1, "seconds": 1}))
    (out / "notes.md").write_text("mine")
    before = tree(out)
    argv = [
        "finetune", "seeds", "--config", RESTAURANTS, "--seeds", "2", "--output-dir", str(out),
        "--model.encoder", str(tiny_bert_dir), "--data.data_dir", str(tmp_path / "absent"),
    ]  # fmt: skip
    assert cli.main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]  # (not weight loading)
    assert errors == [
        f"scpt finetune seeds: error: dataset 'restaurants': 2 of 2 files missing under {tmp_path}/absent:"
    ]
    assert tree(out) == before  # no seed2/restaurants/version_0, no settings.json

    argv[argv.index("--output-dir") + 1] = str(tmp_path / "new/out")
    assert cli.main(argv) == 2
    assert not (tmp_path / "new").exists()
