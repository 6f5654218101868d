"""Aspect-based sentiment data: the SemEval-2014 / MAMS XML reader, the dataset registry, the splits.

One :class:`AspectInstance` per aspect term. :func:`read_absa_xml` reads one file and checks every
annotation; :func:`load_splits` returns the ``train`` / ``dev`` / ``test`` splits of a dataset named in
:data:`DATASETS`, carving a stratified dev split out of train where the release has none (SemEval).

What the released files (SCAPT-ABSA, commit 6f7f89a) contain, and how the reader treats it:

* **Whitespace is part of the offsets.** 136 sentences of Laptop train (66 of them with aspect terms)
  start with a no-break space (U+00A0), mostly followed by spaces; five of Restaurant test end with a
  space; one of MAMS train starts with a space. ``from`` / ``to`` count those characters, so the text
  is kept verbatim, never stripped, and every span is checked against the raw text (all of them match).
* **One term carries whitespace inside its span**: Laptop train sentence 1436, ``term="uninstall\\xa0"``
  ``from=44 to=54``. Whitespace at either end of a term is not part of the aspect, so the reader trims
  it and moves the offsets with it (``"uninstall"``, 44-53): ``text[start:end] == term`` still holds.
  A term that is empty after trimming is an error.
* **opinion_words** (only in the ``_Implicit_Labeled`` files, only on explicit, non-conflict terms) is
  one string of *tokens joined by single spaces*. Several opinion phrases of one aspect are simply
  concatenated (``"fast light simple"``, ``"wonderful well worth"``), so phrase boundaries cannot be
  recovered; tokens are PTB-style (``"does n't recognize"``, ``"o.k. , not any better"``) and
  sometimes spelling-corrected (``"Excellent"`` for the text's ``"Excelent"``), so they are not always
  substrings of the text and carry no offsets. The reader stores the whitespace-separated tokens as
  they are; a comma is a token like any other (it occurs once), not a delimiter.
* **implicit_sentiment** is ``"True"`` / ``"False"`` on every non-conflict term of an
  ``_Implicit_Labeled`` file and absent on conflict terms; in the plain SemEval files and in MAMS it
  is absent everywhere (``implicit`` is then ``None``). A file that labels some non-conflict terms but
  not others is rejected.
* **Duplicates are kept.** Restaurant train has 6 and Laptop train 12 sentence texts that occur
  twice under different ids with identical annotations (3 and 11 duplicate aspect instances); the
  published counts include them. One sentence text is shared between train and test in each SemEval
  domain, and 9 MAMS-train sentences appear in Restaurant test (docs/design.md §5).
* MAMS sentences have no ``id`` attribute; they get ``"<file stem>:<sentence index>"`` (``"val:0"``).
"""

from __future__ import annotations

import math
import os
import random
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

POLARITIES: tuple[str, ...] = ("positive", "negative", "neutral")
"""Sentiment classes in class-index order: positive = 0, negative = 1, neutral = 2."""

CONFLICT = "conflict"
"""SemEval's fourth polarity; dropped unless ``keep_conflict=True``."""

DEV_FRACTION = 0.1
"""Share of SemEval train held out as the dev split (stratified; :func:`load_splits`).

With :data:`SPLIT_SEED` this defines the dev split once: both phases and every corpus builder default
to it, phase 1 keeps these dev sentences out of its corpus, and ``scpt pipeline`` checks that both
phases' parsed configurations agree on it (docs/design.md §5)."""

SPLIT_SEED = 13
"""Seed that draws the SemEval dev split (fixed, so every training seed selects on the same dev set)."""

DATA_DIR_ENV = "SCPT_DATA_DIR"
"""Environment variable naming the data directory when no ``data_dir`` is given."""

SPLITS: tuple[str, ...] = ("train", "dev", "test")

_REQUIRED_ATTRIBUTES = ("term", "polarity", "from", "to")
_BOOLEANS = {"true": True, "false": False}


class DataFormatError(ValueError):
    """A data file does not have the expected format; the message names the file, sentence and value."""


class DataDirError(RuntimeError):
    """No data directory was given and ``SCPT_DATA_DIR`` is not set."""


@dataclass(frozen=True)
class AspectInstance:
    """One aspect term of one sentence, with its sentiment.

    Attributes:
        sentence_id: the sentence's ``id`` attribute, or ``"<file stem>:<index>"`` for MAMS.
        text: the sentence exactly as in the file (leading/trailing whitespace included).
        term: the aspect term; ``text[start:end] == term``.
        start: character offset of the term in ``text`` (the file's ``from``).
        end: character offset one past the term (the file's ``to``).
        polarity: one of :data:`POLARITIES`, or ``"conflict"`` when kept.
        implicit: whether the sentiment is implicit; ``None`` where the file has no label.
        opinion_words: the annotated opinion tokens (space-separated in the file; may be empty).
    """

    sentence_id: str
    text: str
    term: str
    start: int
    end: int
    polarity: str
    implicit: bool | None
    opinion_words: tuple[str, ...]

    @property
    def label(self) -> int:
        """Class index of :attr:`polarity` in :data:`POLARITIES` (conflict has none)."""
        if self.polarity not in POLARITIES:
            raise ValueError(f"polarity {self.polarity!r} has no class index; classes are {POLARITIES}")
        return POLARITIES.index(self.polarity)


# --------------------------------------------------------------------------------------------------
# Reading one file
# --------------------------------------------------------------------------------------------------


def read_absa_xml(path: str | os.PathLike[str], keep_conflict: bool = False) -> list[AspectInstance]:
    """Read a SemEval-2014 Task 4 or MAMS XML file into one instance per aspect term, in file order.

    Every annotation is checked: the attributes ``term``, ``polarity``, ``from``, ``to`` must be present,
    the offsets integers with ``0 <= from <= to <= len(text)``, ``text[from:to] == term``, the polarity
    one of :data:`POLARITIES` or ``"conflict"``, ``implicit_sentiment`` (when present) ``True``/``False``.
    Sentences without aspect terms yield nothing. See the module docstring for the files' quirks.

    Args:
        path: the XML file.
        keep_conflict: keep terms with polarity ``"conflict"`` (dropped by default).

    Raises:
        DataFormatError: malformed XML or a bad annotation; the message names the file, the sentence
            id and the offending value.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    sentences = _parse_sentences(path)
    ids = _sentence_ids(path, sentences)
    instances = [
        instance
        for sentence_id, sentence in zip(ids, sentences)
        for instance in _sentence_instances(path, sentence_id, sentence)
    ]
    _check_implicit_labels_complete(path, instances)
    if not keep_conflict:
        instances = [instance for instance in instances if instance.polarity != CONFLICT]
    return instances


def _parse_sentences(path: Path) -> list[ET.Element]:
    """The ``<sentence>`` elements of ``path``; malformed XML or none at all is a :class:`DataFormatError`.

    The message for malformed XML gives the parser's position and the last sentence opened before it.
    """
    events = ET.iterparse(path, events=("start",))
    last_sentence, index = None, 0
    try:
        for _, element in events:
            if element.tag == "sentence":
                last_sentence = element.get("id") or f"{path.stem}:{index}"
                index += 1
    except ET.ParseError as error:
        line, column = error.position
        where = f" (in or after sentence {last_sentence!r})" if last_sentence is not None else ""
        raise DataFormatError(f"{path}: malformed XML at line {line}, column {column}{where}: {error}") from error
    root = events.root  # type: ignore[attr-defined]  # set once iterparse has read the whole file
    sentences = list(root.iter("sentence"))
    if not sentences:
        raise DataFormatError(
            f"{path}: no <sentence> elements under <{root.tag}>; expected a SemEval-2014 or MAMS XML file"
        )
    return sentences


def _sentence_ids(path: Path, sentences: Sequence[ET.Element]) -> list[str]:
    """The sentences' ``id`` attributes, or ``"<stem>:<index>"`` when no sentence has one (MAMS).

    Ids on some sentences but not others, or a repeated id, is a :class:`DataFormatError`.
    """
    ids = [sentence.get("id") for sentence in sentences]
    if all(sentence_id is None for sentence_id in ids):
        return [f"{path.stem}:{index}" for index in range(len(sentences))]
    seen: set[str] = set()
    for index, sentence_id in enumerate(ids):
        if sentence_id is None:
            raise DataFormatError(
                f"{path}: sentence {index} (0-based) has no 'id' attribute while other sentences have one"
            )
        if sentence_id in seen:
            raise DataFormatError(f"{path}: sentence id {sentence_id!r} occurs more than once")
        seen.add(sentence_id)
    return [str(sentence_id) for sentence_id in ids]


def _sentence_instances(path: Path, sentence_id: str, sentence: ET.Element) -> list[AspectInstance]:
    """The checked aspect instances of one ``<sentence>`` element."""
    text_element = sentence.find("text")
    if text_element is None:
        raise DataFormatError(f"{path}: sentence {sentence_id!r} has no <text> element")
    text = text_element.text or ""
    return [_aspect_instance(path, sentence_id, text, term) for term in sentence.iter("aspectTerm")]


def _aspect_instance(path: Path, sentence_id: str, text: str, element: ET.Element) -> AspectInstance:
    """Check one ``<aspectTerm>`` against its sentence and build its instance."""
    where = f"{path}: sentence {sentence_id!r}"
    missing = [name for name in _REQUIRED_ATTRIBUTES if element.get(name) is None]
    if missing:
        raise DataFormatError(
            f"{where}: <aspectTerm> lacks attribute(s) {', '.join(missing)} (has {dict(element.attrib)})"
        )
    term, polarity = element.attrib["term"], element.attrib["polarity"]
    where = f"{where}, term {term!r}"
    if polarity not in POLARITIES and polarity != CONFLICT:
        known = POLARITIES + (CONFLICT,)
        close = [name for name in known if name.casefold() == polarity.casefold()]
        hint = f"; did you mean {close[0]!r}? polarities are compared case-sensitively" if close else ""
        raise DataFormatError(f"{where}: unknown polarity {polarity!r}; expected one of {known}{hint}")
    start, end = _offsets(where, text, element.attrib["from"], element.attrib["to"])
    if text[start:end] != term:
        raise DataFormatError(
            f"{where}: span from={start} to={end} is {text[start:end]!r} in text {text!r}, not the term"
        )
    term, start, end = _trim_span(where, term, start, end)
    return AspectInstance(
        sentence_id=sentence_id,
        text=text,
        term=term,
        start=start,
        end=end,
        polarity=polarity,
        implicit=_implicit(where, element.get("implicit_sentiment")),
        opinion_words=tuple((element.get("opinion_words") or "").split()),
    )


def _offsets(where: str, text: str, start_value: str, end_value: str) -> tuple[int, int]:
    """``from`` / ``to`` as integers with ``0 <= start <= end <= len(text)``."""
    try:
        start, end = int(start_value), int(end_value)
    except ValueError:
        raise DataFormatError(f"{where}: offsets from={start_value!r} to={end_value!r} are not integers") from None
    if not 0 <= start <= end <= len(text):
        raise DataFormatError(
            f"{where}: offsets from={start} to={end} do not fit the text (length {len(text)}): {text!r}"
        )
    return start, end


def _trim_span(where: str, term: str, start: int, end: int) -> tuple[str, int, int]:
    """Strip whitespace from the term's ends and move the offsets with it (see the module docstring)."""
    trimmed = term.strip()
    if not trimmed:
        raise DataFormatError(f"{where}: the aspect term is empty or only whitespace")
    leading = len(term) - len(term.lstrip())
    return trimmed, start + leading, start + leading + len(trimmed)


def _implicit(where: str, value: str | None) -> bool | None:
    """``implicit_sentiment`` as a bool, or ``None`` when the attribute is absent."""
    if value is None:
        return None
    try:
        return _BOOLEANS[value.lower()]
    except KeyError:
        raise DataFormatError(f"{where}: implicit_sentiment={value!r}; expected 'True' or 'False'") from None


def _check_implicit_labels_complete(path: Path, instances: Sequence[AspectInstance]) -> None:
    """In a file that labels implicitness at all, every non-conflict term must carry the label."""
    if all(instance.implicit is None for instance in instances):
        return
    for instance in instances:
        if instance.implicit is None and instance.polarity != CONFLICT:
            raise DataFormatError(
                f"{path}: sentence {instance.sentence_id!r}, term {instance.term!r}: missing attribute "
                "implicit_sentiment, which the file's other non-conflict terms have"
            )


# --------------------------------------------------------------------------------------------------
# The datasets and where they live
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset's files are and how its dev split is made.

    Attributes:
        name: the registry key (``"restaurants"``).
        title: a human-readable name.
        files: split name -> path relative to the data directory, for each file the release provides.
        dev_file: the key in ``files`` used as the dev split, or ``None`` to carve dev out of train.
        implicit_labels: whether the files carry ``implicit_sentiment``.
    """

    name: str
    title: str
    files: Mapping[str, str]
    dev_file: str | None
    implicit_labels: bool


def _spec(name: str, title: str, files: dict[str, str], dev_file: str | None, implicit: bool) -> DatasetSpec:
    return DatasetSpec(name, title, MappingProxyType(files), dev_file, implicit)


DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(
    {
        "restaurants": _spec(
            "restaurants",
            "SemEval-2014 Task 4 Restaurant",
            {
                "train": "restaurants/Restaurants_Train_v2_Implicit_Labeled.xml",
                "test": "restaurants/Restaurants_Test_Gold_Implicit_Labeled.xml",
            },
            dev_file=None,
            implicit=True,
        ),
        "laptops": _spec(
            "laptops",
            "SemEval-2014 Task 4 Laptop",
            {
                "train": "laptops/Laptops_Train_v2_Implicit_Labeled.xml",
                "test": "laptops/Laptops_Test_Gold_Implicit_Labeled.xml",
            },
            dev_file=None,
            implicit=True,
        ),
        "mams": _spec(
            "mams",
            "MAMS (Jiang et al., 2019)",
            {"train": "mams/train.xml", "val": "mams/val.xml", "test": "mams/test.xml"},
            dev_file="val",
            implicit=False,
        ),
    }
)
"""The known datasets by name; each file path is relative to the data directory."""


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``; an unknown name is a ``ValueError`` listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}") from None


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The data directory: ``data_dir`` when given, else ``$SCPT_DATA_DIR``.

    The directory is not required to exist (``scpt data download`` creates it).

    Raises:
        DataDirError: neither is set; the message says how to set one.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    raise DataDirError(
        f"no data directory: pass one explicitly (data_dir=..., or --data-dir on the command line) or set "
        f"the environment variable {DATA_DIR_ENV}, e.g. 'export {DATA_DIR_ENV}=~/data/absa'. To fetch the "
        f"files into it, run 'scpt data download --data-dir DIR'."
    )


def dataset_files(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Split name -> absolute path of each file of ``dataset``; raises if any is missing.

    Raises:
        ValueError: unknown dataset.
        DataDirError: no data directory given or configured.
        FileNotFoundError: some files are missing; the message lists every expected path.
    """
    spec = dataset_spec(dataset)
    root = resolve_data_dir(data_dir)
    paths = {split: root / relative for split, relative in spec.files.items()}
    missing = [path for path in paths.values() if not path.is_file()]
    if missing:
        listing = "\n".join(f"  {'MISSING' if path in missing else 'found  '}  {path}" for path in paths.values())
        raise FileNotFoundError(
            f"dataset {dataset!r}: {len(missing)} of {len(paths)} files missing under {root}:\n{listing}\n"
            f"Run 'scpt data download --data-dir {root} --datasets {dataset}' to fetch them."
        )
    return paths


# --------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------


def load_splits(
    dataset: str,
    data_dir: str | os.PathLike[str] | None = None,
    dev_fraction: float = DEV_FRACTION,
    seed: int = SPLIT_SEED,
    keep_conflict: bool = False,
) -> dict[str, list[AspectInstance]]:
    """The ``train`` / ``dev`` / ``test`` instances of a dataset from :data:`DATASETS`.

    SemEval has no dev split: dev is a stratified (polarity x implicit) ``dev_fraction`` of the
    released train file, drawn with ``seed`` by :func:`stratified_split`, and train is the rest. MAMS
    uses its ``val.xml`` as dev (``dev_fraction`` and ``seed`` are then unused). Test is returned for
    final evaluation only; model selection must use dev.

    Raises:
        ValueError: unknown dataset or ``dev_fraction`` outside ``[0, 1)``.
        DataDirError: no data directory given or configured.
        FileNotFoundError: dataset files missing (all expected paths listed).
        DataFormatError: a file is malformed.
    """
    spec = dataset_spec(dataset)
    paths = dataset_files(dataset, data_dir)
    read = {split: read_absa_xml(path, keep_conflict=keep_conflict) for split, path in paths.items()}
    if spec.dev_file is None:
        train, dev = stratified_split(read["train"], dev_fraction, seed)
    else:
        train, dev = read["train"], read[spec.dev_file]
    return {"train": train, "dev": dev, "test": read["test"]}


def stratum(instance: AspectInstance) -> tuple[str, bool | None]:
    """The stratum of an instance for the dev split: ``(polarity, implicit)``."""
    return instance.polarity, instance.implicit


def stratified_split(
    instances: Sequence[AspectInstance], fraction: float, seed: int
) -> tuple[list[AspectInstance], list[AspectInstance]]:
    """Split ``instances`` into ``(rest, held_out)`` with ``fraction`` of every stratum held out.

    Strata are :func:`stratum` (polarity x implicit). Sizes use the largest-remainder method: the
    held-out part has ``round(fraction * len(instances))`` instances and each stratum contributes
    ``floor`` or ``ceil`` of ``fraction * stratum size``. Which instances are drawn depends only on
    ``seed`` and the input order (``random.Random(seed)``, not Python's hash seed). Both parts keep
    the input order, and every instance lands in exactly one part.

    The unit is the aspect instance, not the sentence: a sentence with several aspects can have some
    in each part (with the defaults, 227 of Restaurant dev's 333 sentences also occur in its train
    part, with other aspects), and an instance duplicated in the release can land on both sides.

    Raises:
        ValueError: ``fraction`` outside ``[0, 1)``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the dev fraction must be in [0, 1), got {fraction!r}")
    groups = _indices_by_stratum(instances)
    sizes = _largest_remainder_sizes([len(indices) for indices in groups], fraction)
    rng = random.Random(seed)
    held_out: set[int] = set()
    for indices, size in zip(groups, sizes):
        held_out.update(rng.sample(indices, size))
    rest = [instance for index, instance in enumerate(instances) if index not in held_out]
    chosen = [instance for index, instance in enumerate(instances) if index in held_out]
    return rest, chosen


def _indices_by_stratum(instances: Iterable[AspectInstance]) -> list[list[int]]:
    """Instance indices grouped by stratum, strata in order of first appearance."""
    groups: dict[tuple[str, bool | None], list[int]] = {}
    for index, instance in enumerate(instances):
        groups.setdefault(stratum(instance), []).append(index)
    return list(groups.values())


def _largest_remainder_sizes(counts: Sequence[int], fraction: float) -> list[int]:
    """Per-group sizes near ``fraction * count`` (floor or ceil) that sum to ``round(fraction * total)``."""
    targets = [fraction * count for count in counts]
    sizes = [math.floor(target) for target in targets]
    shortfall = math.floor(fraction * sum(counts) + 0.5) - sum(sizes)
    by_remainder = sorted(range(len(counts)), key=lambda group: (sizes[group] - targets[group], group))
    for group in by_remainder[:shortfall]:
        sizes[group] += 1
    return sizes
