"""ABSA data: the SemEval-2014 / MAMS reader and splits (:mod:`scpt.data.absa`), and fetching and
checking the release files (:mod:`scpt.data.download`). ``scpt data`` is in :mod:`scpt.data.commands`.

Nothing here imports torch; the data location comes from ``data_dir`` or ``$SCPT_DATA_DIR``.
"""

from scpt.data.absa import (
    DATASETS,
    POLARITIES,
    AspectInstance,
    DataDirError,
    DataFormatError,
    DatasetSpec,
    load_splits,
    read_absa_xml,
    resolve_data_dir,
    stratified_split,
)
from scpt.data.download import DownloadError, download, verify

__all__ = [
    "DATASETS",
    "POLARITIES",
    "AspectInstance",
    "DataDirError",
    "DataFormatError",
    "DatasetSpec",
    "DownloadError",
    "download",
    "load_splits",
    "read_absa_xml",
    "resolve_data_dir",
    "stratified_split",
    "verify",
]
