"""Fetch the ABSA data files from the SCAPT-ABSA release and check them against known SHA-256 sums.

``scpt data download`` and ``scpt data verify`` run :func:`download` and :func:`verify`. The files come
from the ``data`` folder of github.com/Tribleave/SCAPT-ABSA at a pinned commit; :data:`MANIFEST` maps
each local path (relative to the data directory, the layout :data:`scpt.data.absa.DATASETS` reads) to
its path upstream, which differs only for MAMS (``MAMS/`` upstream, ``mams/`` here).

A file is written to a temporary file beside its target, its sum checked, and only then moved into
place with :func:`os.replace`, so an interrupted or corrupted download never leaves a partial or wrong
file under the final name. An existing file with the expected sum is skipped; an existing file with
another sum is an error unless ``force`` is set (it is never overwritten silently). When a download
fails, the directories it created and left empty are removed again; verified files stay (the next
attempt skips them).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from scpt.data.absa import DATASETS, dataset_spec

DEFAULT_BASE_URL = (
    "https://raw.githubusercontent.com/Tribleave/SCAPT-ABSA/6f7f89a131127f262a8d1fd2774e5a96b58e7193/data"
)
"""The release's data folder at the commit the sums below were taken from."""

SHA256: dict[str, str] = {
    "laptops/Laptops_Test_Gold.xml": "aa3a30c9dd7e0eacf9b69e898eb4118a36c1b4f391a30a08dfc41a38d8b8745b",
    "laptops/Laptops_Test_Gold_Implicit_Labeled.xml": "999fe94542dc29185105282e1a086da8ae6a94074e88093b3fcc39242e2c8b4b",  # noqa: E501
    "laptops/Laptops_Train_v2.xml": "efec2ed73b4efb83b47c697114d800149c558118884afa80362a6e975ba7248c",
    "laptops/Laptops_Train_v2_Implicit_Labeled.xml": "6528e41b6e316c10b74951b912cd77a3d936f68cb5cd73a2a08a39792b481d60",
    "mams/test.xml": "f1a5f53b785335e9c57a1f82b1415026f821040b9e9662a2e467d47a54f20aa9",
    "mams/train.xml": "26ba39142b28169ebc80408294f4e27493bd1e127c6aa2e85ab4bc750bf8017a",
    "mams/val.xml": "5b7d225e2f9482a3814f15aed04ff8323105171a47d22d9899d871c4e0ba86ca",
    "restaurants/Restaurants_Test_Gold.xml": "f21509cfa37e16534cd5b2da043be487355b64ef48fe8d6aaacaeca6b49cc0fb",
    "restaurants/Restaurants_Test_Gold_Implicit_Labeled.xml": "c24c5984d96b85d8979c02be7999eeefb988d63d2dd643e8a0e429e55320fdb6",  # noqa: E501
    "restaurants/Restaurants_Train_v2.xml": "223601da1bded6caa4ef9cf91a7007578141ca6d8ed50d5a5c217565f89d2fc5",
    "restaurants/Restaurants_Train_v2_Implicit_Labeled.xml": "030a451bd607b499cd665a9be8ca04ba0107ec88533fb69e26e6e80f03ac88ef",  # noqa: E501
}
"""Local path -> SHA-256 of every released file (copied from the data folder's SHA256SUMS)."""


def _remote_path(local: str) -> str:
    """The upstream path of a local file: ``mams/x.xml`` -> ``MAMS/x.xml``, the rest unchanged."""
    folder, name = local.split("/", 1)
    return f"{'MAMS' if folder == 'mams' else folder}/{name}"


MANIFEST: dict[str, str] = {local: _remote_path(local) for local in SHA256}
"""Local path (relative to the data directory) -> path under the base URL."""

_CHUNK = 1 << 16
_TIMEOUT_S = 60.0


class DownloadError(RuntimeError):
    """A file could not be fetched or does not have the expected sum; the message says which and why."""


@dataclass(frozen=True)
class FileResult:
    """What happened to one file.

    Attributes:
        path: the local path relative to the data directory.
        status: ``"downloaded"``, ``"skipped"`` (present with the right sum), or for :func:`verify`
            ``"ok"``, ``"missing"``, ``"mismatch"``; ``"failed"`` for a download that did not succeed.
        detail: the error message, or the sum, as text.
    """

    path: str
    status: str
    detail: str = ""


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_for(datasets: Iterable[str] | None = None) -> dict[str, str]:
    """The part of :data:`MANIFEST` belonging to ``datasets`` (all when ``None``), plain files included.

    Raises:
        ValueError: an unknown dataset name.
    """
    names = list(DATASETS) if datasets is None else list(datasets)
    folders = {Path(relative).parts[0] for name in names for relative in dataset_spec(name).files.values()}
    return {local: remote for local, remote in MANIFEST.items() if local.split("/", 1)[0] in folders}


def verify(data_dir: Path, datasets: Iterable[str] | None = None) -> list[FileResult]:
    """Check the files of ``datasets`` under ``data_dir`` against :data:`SHA256` (``ok``/``missing``/``mismatch``)."""
    results = []
    for local in manifest_for(datasets):
        path = data_dir / local
        if not path.is_file():
            results.append(FileResult(local, "missing", str(path)))
            continue
        actual = sha256_file(path)
        if actual == SHA256[local]:
            results.append(FileResult(local, "ok", actual))
        else:
            results.append(FileResult(local, "mismatch", _mismatch(path, SHA256[local], actual)))
    return results


def download(
    data_dir: Path,
    base_url: str = DEFAULT_BASE_URL,
    datasets: Iterable[str] | None = None,
    force: bool = False,
    report: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Fetch the files of ``datasets`` (all when ``None``) into ``data_dir`` and check their sums.

    Every file is attempted; ``report`` (if given) sees each result as it happens. Files already
    present with the right sum are skipped unless ``force``.

    Returns:
        One :class:`FileResult` per file, when all succeeded.

    Raises:
        DownloadError: after trying every file, if any failed (fetch error, sum mismatch, or an
            existing file with another sum and no ``force``); the message lists each failure.
    """
    manifest = manifest_for(datasets)
    new_dirs = _missing_dirs(data_dir, {(data_dir / local).parent for local in manifest})
    results = []
    for local, remote in manifest.items():
        url = f"{base_url.rstrip('/')}/{remote}"
        result = _fetch_one(data_dir / local, local, url, force)
        if report is not None:
            report(result)
        results.append(result)
    failures = [result for result in results if result.status == "failed"]
    if failures:
        for directory in new_dirs:  # deepest first: a dataset folder, then the data directory itself
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        lines = "\n".join(f"  {result.path}: {result.detail}" for result in failures)
        raise DownloadError(f"{len(failures)} of {len(results)} files failed:\n{lines}")
    return results


def _missing_dirs(data_dir: Path, folders: Iterable[Path]) -> list[Path]:
    """The directories among ``folders``, ``data_dir`` and its ancestors that do not exist yet, deepest first."""
    missing = set()
    for folder in [*folders, data_dir]:
        folder = folder.absolute()
        while not folder.exists():
            missing.add(folder)
            folder = folder.parent
    return sorted(missing, key=lambda path: len(path.parts), reverse=True)


def _fetch_one(target: Path, local: str, url: str, force: bool) -> FileResult:
    """Download one file unless it is already there with the right sum; never raises DownloadError."""
    expected = SHA256[local]
    if target.is_file() and not force:
        actual = sha256_file(target)
        if actual == expected:
            return FileResult(local, "skipped", "present with the expected sum")
        return FileResult(
            local, "failed", _mismatch(target, expected, actual) + "; not overwritten (use --force to re-download)"
        )
    try:
        fetch_verified(url, target, expected)
    except DownloadError as error:
        return FileResult(local, "failed", str(error))
    return FileResult(local, "downloaded", url)


def fetch_verified(url: str, target: Path, expected_sha256: str) -> None:
    """Stream ``url`` into a temporary file beside ``target``, check its sum, then move it into place.

    On any failure the temporary file is removed and ``target`` is left as it was.

    Raises:
        DownloadError: the URL could not be read, or the bytes have another sum.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            actual = _stream(url, out)
        if actual != expected_sha256:
            raise DownloadError(_mismatch(target, expected_sha256, actual, source=url))
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _stream(url: str, out: BinaryIO) -> str:
    """Copy the body of ``url`` into the binary file ``out``; return its SHA-256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}; check --base-url") from error
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"{url}: could not read ({reason}); check the network and --base-url") from error
    return digest.hexdigest()


def _mismatch(path: Path, expected: str, actual: str, source: str | None = None) -> str:
    origin = f" (from {source})" if source else ""
    return f"{path}{origin}: SHA-256 mismatch: expected {expected}, got {actual}"


def summarize(results: Sequence[FileResult]) -> str:
    """One line per file: status and path (and the detail for anything not fine)."""
    width = max((len(result.status) for result in results), default=0)
    lines = []
    for result in results:
        detail = f"  ({result.detail})" if result.status in {"failed", "missing", "mismatch"} else ""
        lines.append(f"{result.status:<{width}}  {result.path}{detail}")
    return "\n".join(lines)
