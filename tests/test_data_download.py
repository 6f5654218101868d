"""``scpt data download`` / ``verify`` against a local HTTP server that mirrors the upstream layout."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import DATA_DIR, needs_data
from scpt import cli
from scpt.data.download import (
    MANIFEST,
    SHA256,
    DownloadError,
    download,
    manifest_for,
    sha256_file,
    verify,
)

pytestmark = needs_data

MAMS_FILES = ["mams/test.xml", "mams/train.xml", "mams/val.xml"]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def make_mirror(root: Path, corrupt: str | None = None, omit: str | None = None) -> Path:
    """``root/data/`` laid out as upstream (``MAMS/`` for MAMS) with links to the real files.

    ``corrupt`` names a local path whose served copy gets one byte changed; ``omit`` one left out.
    """
    for local, remote in MANIFEST.items():
        if local == omit:
            continue
        served = root / "data" / remote
        served.parent.mkdir(parents=True, exist_ok=True)
        if local == corrupt:
            data = bytearray((DATA_DIR / local).read_bytes())
            data[len(data) // 2] ^= 0x01
            served.write_bytes(bytes(data))
        else:
            served.symlink_to(DATA_DIR / local)
    return root


@pytest.fixture
def serve() -> Iterator[functools.partial[str]]:
    """``serve(directory) -> base URL`` (its ``data/`` folder) of an HTTP server on 127.0.0.1 for that directory."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(directory: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/data"

    yield functools.partial(start)
    for server in servers:
        server.shutdown()
        server.server_close()


def leftovers(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.name.startswith(".") or path.suffix == ".part"]


# ---------------------------------------------------------------------------------------------------


def test_sums_match_the_shipped_sha256sums_file() -> None:
    listed = {}
    for line in (DATA_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        listed[name.removeprefix("./")] = digest
    assert SHA256 == listed


def test_manifest_maps_local_to_upstream_paths() -> None:
    assert MANIFEST["mams/val.xml"] == "MAMS/val.xml"
    assert MANIFEST["laptops/Laptops_Train_v2.xml"] == "laptops/Laptops_Train_v2.xml"
    assert len(MANIFEST) == 11
    assert sorted(manifest_for(["mams"])) == MAMS_FILES
    assert len(manifest_for(["restaurants", "laptops"])) == 8
    with pytest.raises(ValueError, match="unknown dataset 'yelp'"):
        manifest_for(["yelp"])


def test_download_all_then_skip_when_present(tmp_path: Path, serve: functools.partial[str]) -> None:
    base_url = serve(make_mirror(tmp_path / "www"))
    target = tmp_path / "absa"
    seen = []
    results = download(target, base_url=base_url, report=seen.append)
    assert {result.status for result in results} == {"downloaded"} and seen == results
    assert {result.path for result in results} == set(SHA256)
    for local in SHA256:
        assert (target / local).read_bytes() == (DATA_DIR / local).read_bytes()
    assert {result.status for result in verify(target)} == {"ok"}
    assert leftovers(target) == []

    mtimes = {local: (target / local).stat().st_mtime_ns for local in SHA256}
    again = download(target, base_url=base_url)
    assert {result.status for result in again} == {"skipped"}
    assert mtimes == {local: (target / local).stat().st_mtime_ns for local in SHA256}


def test_corrupted_file_is_an_error_and_leaves_nothing(tmp_path: Path, serve: functools.partial[str]) -> None:
    bad = "mams/val.xml"
    base_url = serve(make_mirror(tmp_path / "www", corrupt=bad))
    target = tmp_path / "absa"
    with pytest.raises(DownloadError) as error:
        download(target, base_url=base_url, datasets=["mams"])
    message = str(error.value)
    served_sum = sha256_file(tmp_path / "www" / "data" / "MAMS" / "val.xml")
    assert "1 of 3 files failed" in message
    assert str(target / bad) in message and SHA256[bad] in message and served_sum in message
    assert not (target / bad).exists()
    assert leftovers(target) == []
    ok = {result.path for result in verify(target, ["mams"]) if result.status == "ok"}
    assert ok == {"mams/train.xml", "mams/test.xml"}  # the other files are intact


def test_existing_wrong_file_is_not_overwritten_without_force(tmp_path: Path, serve: functools.partial[str]) -> None:
    base_url = serve(make_mirror(tmp_path / "www"))
    target = tmp_path / "absa"
    wrong = target / "mams" / "test.xml"
    wrong.parent.mkdir(parents=True)
    wrong.write_text("<sentences/>")
    with pytest.raises(DownloadError, match="--force") as error:
        download(target, base_url=base_url, datasets=["mams"])
    assert str(wrong) in str(error.value) and SHA256["mams/test.xml"] in str(error.value)
    assert wrong.read_text() == "<sentences/>"
    assert (target / "mams" / "train.xml").is_file()  # the others were still fetched

    results = download(target, base_url=base_url, datasets=["mams"], force=True)
    assert [result.status for result in results] == ["downloaded"] * 3
    assert sha256_file(wrong) == SHA256["mams/test.xml"]


def test_http_error_names_the_url(tmp_path: Path, serve: functools.partial[str]) -> None:
    base_url = serve(make_mirror(tmp_path / "www", omit="mams/train.xml"))
    with pytest.raises(DownloadError, match=r"MAMS/train\.xml: HTTP 404"):
        download(tmp_path / "absa", base_url=base_url, datasets=["mams"])
    assert not (tmp_path / "absa" / "mams" / "train.xml").exists()
    assert leftovers(tmp_path / "absa") == []


def test_unreachable_server(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="could not read"):
        download(tmp_path, base_url="http://127.0.0.1:9/data", datasets=["mams"])


def test_verify_reports_missing_and_mismatched(tmp_path: Path) -> None:
    (tmp_path / "mams").mkdir()
    shutil.copy(DATA_DIR / "mams" / "val.xml", tmp_path / "mams" / "val.xml")
    (tmp_path / "mams" / "test.xml").write_text("x")
    statuses = {result.path: result.status for result in verify(tmp_path, ["mams"])}
    assert statuses == {"mams/val.xml": "ok", "mams/test.xml": "mismatch", "mams/train.xml": "missing"}


def test_commands_download_and_verify(
    tmp_path: Path, serve: functools.partial[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url = serve(make_mirror(tmp_path / "www"))
    target = tmp_path / "absa"
    argv = ["data", "download", "--data-dir", str(target), "--base-url", base_url, "--datasets", "mams"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "downloaded  mams/val.xml" in out and "expected SHA-256 sums" in out
    assert cli.main(argv) == 0
    assert "skipped  mams/val.xml" in capsys.readouterr().out

    monkeypatch.setenv("SCPT_DATA_DIR", str(target))  # --data-dir defaults to the environment
    assert cli.main(["data", "verify", "--datasets", "mams"]) == 0
    assert "all 3 files verified" in capsys.readouterr().out
    assert cli.main(["data", "verify", "--datasets", "mams", "laptops"]) == 1
    captured = capsys.readouterr()
    assert "missing  laptops/Laptops_Train_v2.xml" in captured.out
    assert "4 of 7 files missing or wrong" in captured.err and "scpt data download" in captured.err

    (target / "mams" / "val.xml").write_text("x")
    assert cli.main(argv) == 2  # an error; 1 is verify's "files missing or wrong"
    assert "scpt data download: error: 1 of 3 files failed" in capsys.readouterr().err


def test_commands_need_a_data_dir(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SCPT_DATA_DIR", raising=False)
    assert cli.main(["data", "download"]) == 2
    assert "SCPT_DATA_DIR" in capsys.readouterr().err
