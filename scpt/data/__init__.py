"""Data of both phases.

- :mod:`scpt.data.absa`: the SemEval-2014 / MAMS reader and splits (the dev split included);
- :mod:`scpt.data.download`: fetching and checking the release files (``scpt data`` is in
  :mod:`scpt.data.commands`);
- :mod:`scpt.data.corpus`: phase 1's corpora (JSON lines, SCAPT's JSON, the in-domain corpus) and
  their de-duplication against every evaluation split;
- :mod:`scpt.data.encoding`: the one tokenisation and padding path of both phases;
- :mod:`scpt.data.sampling`: batch samplers (length buckets, class groups).

This package's namespace holds the ABSA and download names and imports no torch; the data location
comes from ``data_dir`` or ``$SCPT_DATA_DIR``.
"""

from scpt.data.absa import (
    DATASETS,
    DEV_FRACTION,
    POLARITIES,
    SPLIT_SEED,
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
    "DEV_FRACTION",
    "POLARITIES",
    "SPLIT_SEED",
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
