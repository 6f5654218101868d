"""``scpt figures``: the record readers return exactly what a hand-written record holds, every figure's
records are in the repository, the benchmark scripts' ``--out`` files read back, and the command writes a
PNG of the registered size (one cheap figure; the others are drawn the same way)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from helpers import REPO, load_script
from scpt import cli, figures
from scpt.errors import UserError
from scpt.figures import FIGURES, GradCachePoint, LossCell

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk (which must come first)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


# --------------------------------------------------------------------------------------------------
# The readers, on hand-written records
# --------------------------------------------------------------------------------------------------


def test_read_loss_benchmark_known_values(tmp_path: Path) -> None:
    path = write(
        tmp_path / "losses.csv",
        "# Machine: somewhere\n"
        "record,n,d,vn,method,status,time_s,rss_gib,note\n"
        "2026-11-27,256,128,512,scpt,ok,0.0107,0.020,\n"
        "2026-11-27,8192,768,16384,pml,ok,43.49,11.409,\n"
        "2026-11-30,8192,128,16384,dense,skipped,,,skipped (est. 20 GiB)\n",
    )
    assert figures.read_loss_benchmark(path) == [
        LossCell("2026-11-27", 256, 128, "scpt", 0.0107, 0.020),
        LossCell("2026-11-27", 8192, 768, "pml", 43.49, 11.409),
        LossCell("2026-11-30", 8192, 128, "dense", None, None),
    ]


def test_read_grad_cache_known_values(tmp_path: Path) -> None:
    path = write(
        tmp_path / "grad_cache.csv",
        "# 2 threads\n"
        "n,chunk,mmap_threshold,peak_gib,samples_per_s,error\n"
        "64,0,default,1.72,,\n"
        "1024,128,131072,2.41,3.25,\n"
        "65536,128,default,,,MemoryError\n",
    )
    assert figures.read_grad_cache(path) == [
        GradCachePoint(64, 0, "default", 1.72, None),
        GradCachePoint(1024, 128, "131072", 2.41, 3.25),
    ]


def test_read_metrics_keeps_rows_with_the_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "metrics.csv",
        "epoch,lr-AdamW/pg1,step,train/scl_step,val/probe_knn,val/mean_cosine\n"
        ",2.5e-05,9,,,\n"  # a learning-rate row: none of the columns, dropped
        "0,,9,41.25,,\n"
        "0,,206,,0.615234375,0.4330\n",
    )
    assert figures.read_metrics(path, ("train/scl_step", "val/probe_knn", "val/mean_cosine")) == [
        {"train/scl_step": 41.25, "step": 9, "epoch": 0},
        {"val/probe_knn": 0.615234375, "val/mean_cosine": 0.4330, "step": 206, "epoch": 0},
    ]


def test_read_finetune_curves_known_values(tmp_path: Path) -> None:
    path = write(
        tmp_path / "finetune.csv",
        "# copied\n"
        "arm,seed,epoch,step,val/acc,val/macro_f1,test/acc,test/macro_f1\n"
        "direct,1,0,32,66.25,49.0,,\n"
        "direct,1,4,264,,,77.75,73.5\n"
        "pretrained,2,0,32,70.5,66.125,,\n",
    )
    assert figures.read_finetune_curves(path) == {
        ("direct", 1): [
            {"val/acc": 66.25, "val/macro_f1": 49.0, "step": 32, "epoch": 0},
            {"test/acc": 77.75, "test/macro_f1": 73.5, "step": 264, "epoch": 4},
        ],
        ("pretrained", 2): [{"val/acc": 70.5, "val/macro_f1": 66.125, "step": 32, "epoch": 0}],
    }


def test_read_collapse_runs_known_values(tmp_path: Path) -> None:
    write(tmp_path / "b.jsonl", '{"step": 0, "knn": 0.5}\n\n{"step": 100, "knn": 0.625}\n')
    write(tmp_path / "a.jsonl", '{"step": 0, "knn": 0.25}\n')
    write(tmp_path / "empty.jsonl", "")
    runs = figures.read_collapse_runs(tmp_path)
    assert runs == {"a": [{"step": 0, "knn": 0.25}], "b": [{"step": 0, "knn": 0.5}, {"step": 100, "knn": 0.625}]}
    assert list(runs) == ["a", "b"]


def test_missing_records_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="missing.csv"):
        figures.read_loss_benchmark(tmp_path / "missing.csv")
    with pytest.raises(UserError, match="no .jsonl records"):
        figures.read_collapse_runs(tmp_path)


def test_copy_pipeline_records_trims_and_picks_the_selected_version(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write(run / "pretrain" / "stage.json", json.dumps({"checkpoint": "x/pretrain/ds/version_1/checkpoints/last.ckpt"}))
    write(run / "pretrain" / "ds" / "version_0" / "metrics.csv", "epoch,step,train/scl_step\n0,9,99.0\n")
    write(
        run / "pretrain" / "ds" / "version_1" / "metrics.csv",
        "epoch,step,train/scl_step,train/other\n0,9,41.5,7.0\n0,19,,8.0\n",
    )
    seed = run / "finetune" / "direct" / "seed3"
    write(seed / "result.json", json.dumps({"best_checkpoint": "x/seed3/ds/version_0/checkpoints/best.ckpt"}))
    write(seed / "ds" / "version_0" / "metrics.csv", "epoch,step,val/acc,train/loss\n0,32,70.5,\n0,49,,0.5\n")
    paths = figures.copy_pipeline_records(run, tmp_path / "records", "from a test\nsecond line")
    assert [p.name for p in paths] == ["pretrain.csv", "finetune.csv"]
    assert paths[0].read_text().splitlines()[:2] == ["# from a test", "# second line"]
    assert figures.read_metrics(paths[0], figures.PRETRAIN_COLUMNS) == [{"train/scl_step": 41.5, "step": 9, "epoch": 0}]
    assert "train/other" not in paths[0].read_text()
    assert figures.read_finetune_curves(paths[1]) == {("direct", 3): [{"val/acc": 70.5, "step": 32, "epoch": 0}]}


# --------------------------------------------------------------------------------------------------
# The benchmark scripts' --out files are records the figures read
# --------------------------------------------------------------------------------------------------


def test_losses_script_out_csv_reads_back(tmp_path: Path) -> None:
    losses = load_script("experiments/benchmarks/losses.py")
    cells = [
        losses.Cell("scpt", 4096, 128, times=[1.0, 0.96688, 2.0], rss_gib=0.1131),
        losses.Cell("pml", 8192, 128, status="skipped", note="skipped (est. 20 GiB)"),
    ]
    path = write(tmp_path / "out.csv", losses.records_csv(cells, ["Machine: test"], "2026-12-01"))
    assert path.read_text().startswith("# Machine: test\n")
    assert figures.read_loss_benchmark(path) == [
        LossCell("2026-12-01", 4096, 128, "scpt", 1.0, 0.1131),
        LossCell("2026-12-01", 8192, 128, "pml", None, None),
    ]


def test_grad_cache_script_out_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grad_cache = load_script("experiments/benchmarks/grad_cache.py")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    points = [
        {"n": 64, "chunk": 0, "peak_gib": 1.43, "samples_per_s": 4.25},
        {"n": 4096, "chunk": 128, "error": "MemoryError"},
    ]
    for name in ("out.csv", "out.json"):
        grad_cache.write_points(tmp_path / name, points, "test machine")
        assert figures.read_grad_cache(tmp_path / name) == [GradCachePoint(64, 0, "131072", 1.43, 4.25)]


# --------------------------------------------------------------------------------------------------
# The registry and the command
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_figure_has_its_records_in_the_repository(name: str) -> None:
    spec = FIGURES[name]
    assert figures.missing_inputs(spec, REPO) == []
    for relative in spec.inputs:
        path = REPO / relative
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        assert all(f.stat().st_size < 200_000 for f in files), files
        assert Path(relative).parts[0] == "experiments" and "records" in Path(relative).parts
    assert Path(spec.output).suffix == ".png" and Path(spec.output).parts[0] == "experiments"


def test_figures_command_writes_a_png_of_the_registered_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "grad_cache_memory"
    spec = FIGURES[name]
    for relative in spec.inputs:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / relative, tmp_path / relative)
    assert cli.main(["figures", name, "--root", str(tmp_path)]) == 0
    out = tmp_path / spec.output
    assert capsys.readouterr().out.splitlines() == [str(out)]
    assert png_size(out) == spec.pixels == (1000, 600)


def test_missing_records_is_one_line_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["figures", "grad_cache_memory", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    missing = tmp_path / "experiments/benchmarks/records/grad_cache.csv"
    assert len(err) == 1 and err[0].startswith("scpt figures: error: ") and str(missing) in err[0]
    assert not (tmp_path / "experiments").exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"n,d,vn,method\n8,128,16,scpt\n", "no field 'record'"),  # a CSV without the record column
        (b"record,n\n\xff\xfe,1\n", "'utf-8' codec can't decode byte 0xff in position 9: invalid start byte"),
    ],
)
def test_malformed_records_are_one_line_naming_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, problem: str
) -> None:
    records = write(tmp_path / "experiments/benchmarks/records/losses.csv", "")
    records.write_bytes(content)
    assert cli.main(["figures", "losses_time", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"scpt figures: error: losses_time: its records ({records}) cannot be read: {problem}; are they the records "
        "scpt wrote? (--traceback shows where)"
    ]
    assert not (tmp_path / "experiments/benchmarks/losses_time.png").exists()


def test_unknown_figure_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["figures", "no_such_figure"]) == 2
    assert "unknown figure no_such_figure" in capsys.readouterr().err
    assert cli.main(["figures", "--list"]) == 0
    listed = capsys.readouterr().out
    for name, spec in FIGURES.items():
        assert name in listed and spec.output in listed


def test_sweep_grid_reads_a_trials_table(tmp_path: Path) -> None:
    from scpt.figures import read_sweep_grid

    path = tmp_path / "trials.csv"
    path.write_text(
        "number,state,tau,alpha,val/probe_knn,seconds,error\n"
        "0,COMPLETE,0.5,0.1,0.75,10.0,\n"
        "1,COMPLETE,0.1,0.1,0.5,10.0,\n"
        "2,FAIL,0.1,0.2,,3.0,boom\n"
        "3,COMPLETE,0.5,0.2,0.25,10.0,\n"
    )
    assert read_sweep_grid(path, "val/probe_knn") == ([0.1, 0.5], [0.1, 0.2], [[0.5, 0.75], [None, 0.25]])


def _long_tail_run(root: Path, setting: str, seed: int, values: dict[str, float], seconds: int) -> None:
    """A run folder as experiments/dscl_long_tail/run.sh leaves it: an earlier validation, a train row, the last
    validation, and time.json."""
    run = root / setting / f"seed_{seed}"
    keys = sorted(values)
    earlier = ",".join("0.1" for _ in keys)
    blanks = ",".join("" for _ in keys)
    write(
        run / "restaurants" / "version_0" / "metrics.csv",
        f"epoch,step,train/loss_step,{','.join(keys)}\n0,149,,{earlier}\n1,200,3.5,{blanks}\n"
        f"1,299,,{','.join(str(values[k]) for k in keys)}\n",
    )
    write(run / "time.json", json.dumps({"seconds": seconds, "steps": 300}))


def test_long_tail_summary_reads_the_last_validation_and_the_figure_draws_it(tmp_path: Path) -> None:
    summarize = load_script("experiments/dscl_long_tail/summarize.py")
    keys = [key for _, key in summarize.columns()]
    base = {key: 0.5 for key in keys} | {"val/probe_knn_recall/negative": 0.2, "val/probe_knn_f1/negative": 0.3}
    dscl = base | {"val/probe_knn_recall/negative": 0.35, "val/probe_knn_f1/negative": 0.4}
    _long_tail_run(tmp_path / "runs", "supcon_out", 1, base, 600)
    _long_tail_run(tmp_path / "runs", "dscl_alpha_0.25", 1, dscl, 660)
    _long_tail_run(tmp_path / "runs", "dscl_alpha_0.05", 1, dscl, 660)
    (tmp_path / "runs" / "dscl_alpha_0.5" / "seed_1").mkdir(parents=True)  # unfinished: no time.json
    results = summarize.collect(tmp_path / "runs")
    assert list(results) == ["supcon_out", "dscl_alpha_0.05", "dscl_alpha_0.25"]  # SupCon, then by alpha
    assert results["supcon_out"]["1"]["val/probe_knn_recall/negative"] == 0.2
    assert results["supcon_out"]["1"]["step"] == 299 and results["supcon_out"]["1"]["seconds"] == 600
    table = summarize.tables(results)
    assert "| dscl_alpha_0.25 | 1 |" in table and "| 10.0 |" in table and "| 11.0 |" in table  # minutes
    paired = table.split("Paired differences")[1]
    assert "0.150" in paired and "0.100" in paired  # tail recall +0.15, tail F1 +0.10
    records = tmp_path / "records"
    records.mkdir()
    (records / "results.json").write_text(json.dumps(results))
    read = figures.read_long_tail(records / "results.json")
    assert read["dscl_alpha_0.25"]["val/probe_knn_recall/negative"] == [0.35]
    out = tmp_path / "long_tail.png"
    figures.plot_dscl_long_tail(records / "results.json", out, size=(12.0, 4.0))
    assert png_size(out) == (1200, 400)


def test_read_lout_vs_lin_known_values(tmp_path: Path) -> None:
    seeds = {"1": {"acc": 80.0, "macro_f1": 70.0, "ise_acc": 60.0, "ese_acc": 90.0}}
    arm = {"probe": {"val/probe_knn": 0.5, "val/probe_centroid": 0.4}, "pretrain_seconds": 10, "seeds": seeds}
    path = write(tmp_path / "results.json", json.dumps({"laptops": {"out": arm, "in": arm}}))
    read = figures.read_lout_vs_lin(path)
    assert read == {"laptops": {v: {"probe": arm["probe"], "seeds": arm["seeds"]} for v in ("out", "in")}}
    figures.plot_lout_vs_lin(path, tmp_path / "plot.png", size=(5.0, 3.0))
    assert png_size(tmp_path / "plot.png") == (500, 300)
    assert figures._mean_std([1.0, 3.0]) == (2.0, 2**0.5) and figures._mean_std([4.0]) == (4.0, 0.0)


def test_variant_arms_never_share_a_main_arms_colour() -> None:
    colours = figures.arm_colours(["direct", "seed8", "pretrained", "no_scl", "seed8"])
    assert colours == {"pretrained": "tab:blue", "direct": "tab:orange", "no_scl": "tab:green", "seed8": "tab:red"}
    many = figures.arm_colours([f"v{i}" for i in range(7)])
    assert many["v0"] == many["v6"] == "tab:green" and "tab:blue" not in many.values()  # cycles past six
