"""Phase-1 (pre-training) corpora: labelled sentences with their aspect spans, read from JSONL, from
SCAPT's released JSON, or built in-domain from the ABSA train splits, de-duplicated against every
evaluation split.

Every reader returns :class:`CorpusExample` objects: a sentence, a class name (the SupCon label), the
character spans of its aspect terms (:class:`AspectSpan`, for masked aspect prediction) and, in
per-aspect mode, the aspect the label belongs to. A :class:`CorpusReport` passed to a reader counts
what was read, skipped and kept (counts add up over calls, so one report can cover several files).

Formats
-------

* **JSONL** (:func:`read_jsonl_corpus`), one object per line::

      {"text": "The fish was dry.", "label": "negative",
       "aspects": [{"term": "fish", "from": 4, "to": 8, "label": "negative"}]}

  ``label`` is a string or an integer; a ``label_map`` (keys compared as ``str(label)``) renames it
  and every label absent from the map is an error. ``aspects`` is optional; ``from`` / ``to`` are
  character offsets, ``to`` exclusive, and ``text[from:to] == term`` is checked. Each line is one
  sentence-level example (``target=None``): encode it with ``input_format: sentence``.
* **SCAPT JSON** (:func:`read_scapt_json`): the Yelp / Amazon corpora released with SCAPT-ABSA
  (``scapt_yelp_json.zip``, ``scapt_amazon_json.zip``) are JSON lines such as::

      {"text": "The design is sleek and elegant, yet the case can stand up to a good beating.",
       "tokens": ["the", "design", "is", ...],
       "aspect_terms": [{"aspect_term": "design", "left_index": 4, "right_index": 10, "sentiment": 5},
                        {"aspect_term": "case", "left_index": 41, "right_index": 45, "sentiment": 5}]}

  ``left_index`` / ``right_index`` are **character** offsets, right exclusive: SCAPT's reader
  (``preprocess/utils.py: parse_json``) asserts ``aspect == sent[left_index:right_index]`` on every
  term, and the sample lines above satisfy it (``tokens`` is a lower-cased tokenisation that the
  offsets do not index). Token indices are therefore not supported: a span that does not match is an
  error. ``sentiment`` is the review's star rating, 1 or 5, mapped to ``negative`` / ``positive``
  (SCAPT's ``sentiment_dict = {1: 0, 5: 1}``). SCAPT takes the label of the first term; here all
  terms of a line must agree, and a line that disagrees, or has no terms (no label), is malformed.
  SCAPT also drops lines of 8 tokens or fewer and lower-cases the text; neither is done here.

Malformed lines raise :class:`CorpusFormatError` naming ``<file>:<line>``, the field and the value,
or, with ``on_error="skip"``, are skipped and counted (``CorpusReport.skipped_malformed``, with the
first messages kept in ``CorpusReport.errors``). Blank lines are ignored.

Labels and the class set
------------------------

A corpus has a declared class set, ``classes`` (:func:`resolve_classes`): given explicitly
(``data.classes``), or else the values of the label map when there is one (SCAPT's default map:
``negative``, ``positive``). Every label, of a line and of its aspects, after the label map, must be
one of them: a label outside the set (``positve``), or a raw label that is not a key of the label map,
raises :class:`UnknownLabelError` (a :class:`CorpusFormatError`) naming ``<file>:<line>``, the value and
the known classes, or, with ``on_error="skip"``, is skipped and counted apart from malformed lines
(``CorpusReport.skipped_unknown_label``, per value in ``CorpusReport.unknown_labels``, both in
:meth:`CorpusReport.summary`). Labels are compared **case-sensitively**: ``Negative`` is not
``negative``; the error then suggests the known class that matches but for case (fix the file, or map
it with ``label_map: {Negative: negative, ...}``). A label never becomes a class of its own silently.
With neither ``classes`` nor a label map, the readers keep ``str(label)`` unchecked (library use);
the phase-1 data module always declares a set (default: :data:`scpt.data.absa.POLARITIES`).

In-domain corpus and the MAMS label decision
--------------------------------------------

:func:`in_domain_corpus` builds the corpus from the **train** splits of the ABSA datasets, after the
same dev carve-out phase 2 uses (:func:`scpt.data.absa.load_splits`). Aspect instances are grouped
into sentences by (dataset, split, sentence id) in file order. Two label modes:

* ``"aspect"`` (default): one example per aspect term, labelled with that term's polarity, with
  ``target`` the term's span and ``aspects`` all spans of the sentence. Every MAMS sentence has at
  least two aspects with different polarities by construction, so a sentence-level label would drop
  all of MAMS; per-aspect labels keep every (sentence, aspect) pair, which is also the input phase 2
  classifies, so pre-training and fine-tuning see the same kind of pair.
* ``"sentence"``: one example per sentence whose aspects all share one polarity (SCAPT's setting: a
  review sentence with one sentiment), ``target=None``; sentences with mixed polarities are dropped
  and counted in ``CorpusReport.skipped_mixed``. Conflict terms are already dropped by the XML
  reader, so they neither label nor mix a sentence.

De-duplication
--------------

Phase-1 text must never contain a sentence that phase 2 evaluates on, or the pre-trained encoder has
seen (and, with SCL, been trained to separate by label) the dev or test sentences. Sentences are
compared by :func:`normalize_sentence` (Unicode NFKC, case-folded, whitespace runs -- no-break spaces
included -- collapsed to one space, stripped). :func:`in_domain_corpus` drops, **as whole sentences**:

1. every train sentence whose normalised text equals that of any sentence in the dev or test split
   of every dataset in ``dedup_against`` (all of :data:`scpt.data.absa.DATASETS` by default), built
   with the same ``dev_fraction`` / ``split_seed`` as phase 2. SemEval's dev split is drawn per aspect
   instance, so a sentence with one aspect in dev and others in train is removed from the corpus
   with all its aspects; 9 MAMS-train sentences occur in Restaurant test and are removed too;
2. then every repeat of a sentence already kept (the first occurrence stays, with all its aspects).

Both happen before the label mode is applied, so the counts of read and removed sentences are the
same in both modes. :func:`eval_sentences` and :func:`deduplicate` apply the same rule to any
corpus (:func:`load_corpus` does so by default).
"""

from __future__ import annotations

import difflib
import json
import os
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from scpt.data.absa import (
    DATASETS,
    DEV_FRACTION,
    POLARITIES,
    SPLIT_SEED,
    AspectInstance,
    dataset_spec,
    load_splits,
)

LABEL_MODES: tuple[str, ...] = ("aspect", "sentence")
"""How :func:`in_domain_corpus` labels: one example per aspect term, or one per single-polarity sentence."""

SCAPT_LABEL_MAP: Mapping[str, str] = MappingProxyType({"1": "negative", "5": "positive"})
"""SCAPT's star ratings to class names (its code: ``sentiment_dict = {1: 0, 5: 1}``)."""

EVAL_SPLITS: tuple[str, ...] = ("dev", "test")
"""The splits a pre-training corpus must not share a sentence with."""

MAX_REPORTED_ERRORS = 5
"""How many messages of skipped lines a :class:`CorpusReport` keeps."""

OnError = Literal["raise", "skip"]
LabelMode = Literal["aspect", "sentence"]
PathLike = str | os.PathLike[str]


class CorpusFormatError(ValueError):
    """A corpus line is malformed; the message is ``<file>:<line>: <what is wrong>``, naming field and value."""


class UnknownLabelError(CorpusFormatError):
    """A corpus line's label is not in the declared classes (or not a key of the label map); the message
    names ``<file>:<line>``, the value and the known classes, and suggests a class that differs only in case."""


@dataclass(frozen=True)
class AspectSpan:
    """An aspect term of a sentence.

    Attributes:
        term: the aspect term; ``text[start:end] == term`` for the sentence ``text`` it belongs to.
        start: character offset of the term.
        end: character offset one past the term.
        label: the term's polarity as a class name (after the label map), or ``None`` if unknown.
    """

    term: str
    start: int
    end: int
    label: str | None = None


@dataclass(frozen=True)
class CorpusExample:
    """One pre-training example.

    Attributes:
        text: the sentence, verbatim (offsets count every character).
        label: the class name (after the label map) that SupCon uses.
        aspects: all aspect spans of the sentence, in file order (for masked aspect prediction).
        target: in per-aspect mode the aspect ``label`` belongs to (one of ``aspects``); ``None`` for
            a sentence-level label.
        source: where the example comes from: ``"<file>:<line>"`` or ``"<dataset>/<split>:<sentence id>"``.
            Examples of one sentence share ``source`` and ``text``.

    Raises:
        ValueError: a span of ``aspects`` or ``target`` does not match ``text``.
    """

    text: str
    label: str
    aspects: tuple[AspectSpan, ...] = ()
    target: AspectSpan | None = None
    source: str = ""

    def __post_init__(self) -> None:
        spans = self.aspects if self.target is None else (*self.aspects, self.target)
        for span in spans:
            if not (0 <= span.start <= span.end <= len(self.text) and self.text[span.start : span.end] == span.term):
                raise ValueError(
                    f"{self.source or 'example'}: span {span.start}-{span.end} of {self.text!r} is "
                    f"{self.text[span.start : span.end]!r}, not the term {span.term!r}"
                )


@dataclass
class CorpusReport:
    """What a reader did, for logging; counts add up over every call that is passed the report.

    Attributes:
        read: sentences read (non-blank lines of a file; sentences with aspects of the ABSA train splits).
        skipped_malformed: malformed lines skipped with ``on_error="skip"``.
        skipped_unknown_label: lines skipped with ``on_error="skip"`` because a label is not a declared class
            (or not a key of the label map).
        unknown_labels: those labels as written in the file (``str(value)``) -> lines skipped for it.
        skipped_mixed: sentences dropped in sentence mode because their aspects disagree in polarity.
        removed_eval_overlap: sentences dropped because they occur in a dev or test split.
        removed_internal: sentences dropped as repeats of an earlier sentence of the corpus.
        removed_duplicates: ``removed_eval_overlap + removed_internal``.
        kept: examples returned (one per aspect term in aspect mode).
        kept_sentences: sentences those examples come from.
        errors: the first :data:`MAX_REPORTED_ERRORS` messages of skipped lines (malformed or unknown label).
    """

    read: int = 0
    skipped_malformed: int = 0
    skipped_mixed: int = 0
    removed_duplicates: int = 0
    kept: int = 0
    removed_eval_overlap: int = 0
    removed_internal: int = 0
    kept_sentences: int = 0
    skipped_unknown_label: int = 0
    unknown_labels: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line, e.g. ``"read 10 sentences; skipped 1 malformed, 2 mixed-polarity; removed 3 duplicates
        (2 in dev/test splits, 1 repeated); kept 9 examples from 4 sentences"``, plus the first error.

        Lines skipped for an unknown label add ``"2 with an unknown label ('positve' 1, 'Negative' 1), "``
        after the malformed count."""
        unknown = ""
        if self.skipped_unknown_label:
            counts = ", ".join(f"{label!r} {count}" for label, count in self.unknown_labels.items())
            unknown = f"{self.skipped_unknown_label} with an unknown label ({counts}), "
        line = (
            f"read {self.read} sentences; skipped {self.skipped_malformed} malformed, {unknown}{self.skipped_mixed} "
            f"mixed-polarity; removed {self.removed_duplicates} duplicates ({self.removed_eval_overlap} in "
            f"dev/test splits, {self.removed_internal} repeated); kept {self.kept} examples from "
            f"{self.kept_sentences} sentences"
        )
        if self.errors:
            line += f"; first skipped line: {self.errors[0]}"
        return line

    def _count_removed(self, reason: Literal["eval", "internal"]) -> None:
        if reason == "eval":
            self.removed_eval_overlap += 1
        else:
            self.removed_internal += 1
        self.removed_duplicates += 1

    def _add(self, other: CorpusReport) -> None:
        for count in fields(self):
            if count.name not in ("errors", "unknown_labels"):
                setattr(self, count.name, getattr(self, count.name) + getattr(other, count.name))
        for label, count in other.unknown_labels.items():
            self.unknown_labels[label] = self.unknown_labels.get(label, 0) + count
        self.errors.extend(other.errors[: max(0, MAX_REPORTED_ERRORS - len(self.errors))])

    def _count_kept(self, examples: Sequence[CorpusExample]) -> None:
        self.kept += len(examples)
        self.kept_sentences += len({(example.source, example.text) for example in examples})


def normalize_sentence(text: str) -> str:
    """The key sentences are compared by for de-duplication.

    Unicode NFKC (which also turns a no-break space into a space), ``str.casefold``, every run of
    whitespace (``str.split``'s definition: spaces, tabs, newlines, U+00A0, U+2009, ...) collapsed
    to one space, stripped: ``normalize_sentence(" The\\u00a0FOOD  was ﬁne ") == "the food was fine"``.
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


# --------------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------------


class _LineError(Exception):
    """A malformed line; the message says what is wrong, without the file and line."""


def read_jsonl_corpus(
    path: PathLike,
    label_map: Mapping[str, str] | None = None,
    on_error: OnError = "raise",
    report: CorpusReport | None = None,
    classes: Sequence[str] | None = None,
) -> list[CorpusExample]:
    """Read a JSONL corpus: one ``{"text", "label", ["aspects"]}`` object per line (module docstring).

    Every example is sentence-level (``target=None``); ``source`` is ``"<path>:<line>"``.

    Args:
        path: the file (UTF-8; a byte-order mark is allowed).
        label_map: renames labels, keys compared as ``str(label)``; a label (sentence or aspect) that
            is not a key is an error. ``None`` keeps ``str(label)``.
        on_error: ``"raise"`` a :class:`CorpusFormatError` at the first malformed line, or ``"skip"``
            malformed lines and count them in ``report.skipped_malformed`` (``skipped_unknown_label``
            for a label outside the classes).
        report: counts to add to.
        classes: the declared class set (:func:`resolve_classes`): every label after the map must be one
            of them, case-sensitively. ``None``: the label map's values, or no check without a map.

    Raises:
        UnknownLabelError: a label (sentence or aspect) not in ``classes`` or not a key of ``label_map``;
            the message names ``"<path>:<line>"``, the value and the known classes.
        CorpusFormatError: a malformed line (bad JSON or UTF-8, not an object, ``text`` missing / not a
            string / empty, ``label`` missing or not a string or integer,
            ``aspects`` not a list of ``{"term", "from", "to"}`` objects, a span that does not fit the
            text or is not the term); the message is ``"<path>:<line>: ..."``.
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``on_error``, ``label_map`` or ``classes`` is invalid.
    """
    labels = _LabelCheck(_checked_label_map(label_map), resolve_classes(classes, label_map))

    def parse(record: dict[str, Any]) -> tuple[str, str, tuple[AspectSpan, ...]]:
        text = _text_field(record, "text")
        label = _label(record, "label", labels)
        aspects = record.get("aspects")
        if aspects is None:
            return text, label, ()
        if not isinstance(aspects, list):
            raise _LineError(f"field 'aspects' must be a list, got {_show(aspects)}")
        return text, label, tuple(_jsonl_span(text, index, aspect, labels) for index, aspect in enumerate(aspects))

    return _read_lines(path, parse, on_error, report)


def read_scapt_json(
    path: PathLike,
    label_map: Mapping[str, str] | None = None,
    on_error: OnError = "raise",
    report: CorpusReport | None = None,
    classes: Sequence[str] | None = None,
) -> list[CorpusExample]:
    """Read SCAPT's Yelp / Amazon pre-training corpus (JSON lines with ``text`` and ``aspect_terms``).

    The label of a line is the mapped ``sentiment`` of its aspect terms, which must all agree; each
    term becomes an :class:`AspectSpan` with that label. ``left_index`` / ``right_index`` are
    character offsets, right exclusive (see the module docstring for the evidence). Other fields
    (``tokens``) are ignored. Examples are sentence-level (``target=None``), ``source="<path>:<line>"``.

    Args:
        path: the file (UTF-8).
        label_map: ratings to class names, keys compared as ``str(sentiment)``; defaults to
            :data:`SCAPT_LABEL_MAP` (1 -> negative, 5 -> positive). A rating not in the map is an error.
        on_error: ``"raise"`` at the first malformed line, or ``"skip"`` and count it.
        report: counts to add to.
        classes: the declared class set; every mapped rating must be one of them. ``None``: the map's values.

    Raises:
        UnknownLabelError: a rating not in the map; the message names ``"<path>:<line>"`` and the known classes.
        CorpusFormatError: a malformed line: bad JSON, ``text`` missing or empty, ``aspect_terms``
            missing or empty, a term lacking a field, a span that is not the
            term, or terms that disagree in sentiment; the message is ``"<path>:<line>: ..."``.
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``on_error`` or ``label_map`` is invalid, or maps to a name outside ``classes``.
    """
    label_map = SCAPT_LABEL_MAP if label_map is None else label_map
    labels = _LabelCheck(_checked_label_map(label_map), resolve_classes(classes, label_map))

    def parse(record: dict[str, Any]) -> tuple[str, str, tuple[AspectSpan, ...]]:
        text = _text_field(record, "text")
        terms = record.get("aspect_terms")
        if terms is None:
            raise _LineError("missing field 'aspect_terms' (the line's label comes from its terms' sentiment)")
        if not isinstance(terms, list) or not terms:
            raise _LineError(
                f"field 'aspect_terms' must be a non-empty list (the label comes from its terms), got {_show(terms)}"
            )
        spans = tuple(_scapt_span(text, index, term, labels) for index, term in enumerate(terms))
        sentiments = {span.label for span in spans}
        if len(sentiments) > 1:
            listing = ", ".join(f"{span.term!r}: {span.label}" for span in spans)
            raise _LineError(f"the aspect terms disagree in sentiment ({listing}); a line carries one review rating")
        return text, str(spans[0].label), spans

    return _read_lines(path, parse, on_error, report)


def _read_lines(
    path: PathLike,
    parse: Callable[[dict[str, Any]], tuple[str, str, tuple[AspectSpan, ...]]],
    on_error: OnError,
    report: CorpusReport | None,
) -> list[CorpusExample]:
    """Parse every non-blank line of ``path`` into a sentence-level example; handle malformed lines."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    report = report if report is not None else CorpusReport()
    path = Path(path)
    examples: list[CorpusExample] = []
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            report.read += 1
            try:
                record = _json_object(raw, first=number == 1)
                text, label, aspects = parse(record)
            except _LineError as error:
                message = f"{path}:{number}: {error}"
                unknown = isinstance(error, _UnknownLabel)
                if on_error == "raise":
                    raise (UnknownLabelError if unknown else CorpusFormatError)(message) from None
                if unknown:
                    report.skipped_unknown_label += 1
                    report.unknown_labels[error.value] = report.unknown_labels.get(error.value, 0) + 1
                else:
                    report.skipped_malformed += 1
                if len(report.errors) < MAX_REPORTED_ERRORS:
                    report.errors.append(message)
                continue
            examples.append(CorpusExample(text=text, label=label, aspects=aspects, source=f"{path}:{number}"))
    report._count_kept(examples)
    return examples


def _json_object(raw: bytes, first: bool) -> dict[str, Any]:
    """One line as a JSON object."""
    try:
        line = raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as error:
        raise _LineError(f"not UTF-8 ({error})") from None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise _LineError(f"not valid JSON ({error.msg} at column {error.colno}): {_clip(line.strip())}") from None
    if not isinstance(record, dict):
        raise _LineError(f"expected a JSON object, got {_show(record)}")
    return record


def _text_field(record: Mapping[str, Any], name: str) -> str:
    """A required, non-blank string field."""
    if name not in record:
        raise _LineError(f"missing field {name!r}")
    text = record[name]
    if not isinstance(text, str):
        raise _LineError(f"field {name!r} must be a string, got {_show(text)}")
    if not text.strip():
        raise _LineError(f"field {name!r} is empty: {text!r}")
    return text


class _UnknownLabel(_LineError):
    """A label outside the declared classes (or not a key of the label map); ``value`` is ``str(label)``."""

    def __init__(self, message: str, value: str) -> None:
        super().__init__(message)
        self.value = value


@dataclass(frozen=True)
class _LabelCheck:
    """How a reader turns a raw label into a class name: the label map (``None``: keep ``str(label)``),
    then membership in ``classes`` (``None``: no check)."""

    label_map: Mapping[str, str] | None
    classes: tuple[str, ...] | None


def resolve_classes(
    classes: Sequence[str] | None, label_map: Mapping[Any, str] | None = None
) -> tuple[str, ...] | None:
    """The declared class set of a corpus: ``classes`` if given, else the label map's values (in map
    order, each once), else ``None`` (no check).

    Raises:
        ValueError: ``classes`` is empty, repeats a name or holds a non-string / empty name, or the label
            map renames a label to a name outside ``classes`` (the message lists them).
    """
    if classes is None:
        return None if label_map is None else tuple(dict.fromkeys(str(name) for name in label_map.values()))
    if isinstance(classes, str) or not classes:
        raise ValueError(f"classes must be a non-empty list of class names, got {classes!r}")
    declared = tuple(classes)
    for name in declared:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"classes: every class must be a non-empty string, got {name!r} in {list(declared)}")
    if len(set(declared)) != len(declared):
        raise ValueError(f"classes names a class more than once: {list(declared)}")
    if label_map is not None:
        outside = sorted({str(value) for value in label_map.values()} - set(declared))
        if outside:
            raise ValueError(
                f"label_map renames labels to {outside}, which are not in classes {list(declared)}; "
                "add them to classes or fix the label map"
            )
    return declared


def _label_hint(label: str, known: Sequence[str]) -> str:
    """A suggestion for an unknown ``label``: ``"; did you mean 'negative'? labels are compared
    case-sensitively"`` when it matches a known name but for case (``str.casefold``), else ``"; did you
    mean 'positive'?"`` for a near spelling (``difflib``, ratio >= 0.8), else ``""``."""
    matches = [name for name in known if name != label and name.casefold() == label.casefold()]
    if matches:
        return f"; did you mean {matches[0]!r}? labels are compared case-sensitively"
    close = difflib.get_close_matches(label, list(known), n=1, cutoff=0.8)
    return f"; did you mean {close[0]!r}?" if close else ""


def _label(record: Mapping[str, Any], name: str, labels: _LabelCheck, where: str = "") -> str:
    """A required label field (string or integer), mapped through the label map and checked against the classes."""
    if name not in record:
        raise _LineError(f"{where}missing field {name!r}")
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _LineError(f"{where}field {name!r} must be a string or an integer, got {_show(value)}")
    key = str(value)
    if not key.strip():
        raise _LineError(f"{where}field {name!r} is empty")
    classes = ", ".join(repr(known) for known in labels.classes) if labels.classes is not None else ""
    if labels.label_map is not None:
        if key not in labels.label_map:
            keys = ", ".join(repr(known) for known in labels.label_map)
            raise _UnknownLabel(
                f"{where}field {name!r} value {_show(value)} is not in the label map (keys: {keys}; "
                f"known classes: {classes}){_label_hint(key, list(labels.label_map))}",
                key,
            )
        key = labels.label_map[key]
    if labels.classes is not None and key not in labels.classes:
        raise _UnknownLabel(
            f"{where}field {name!r} value {_show(value)} is not a known class (known classes: {classes})"
            f"{_label_hint(key, labels.classes)}",
            str(value),
        )
    return key


def _jsonl_span(text: str, index: int, aspect: Any, label_map: _LabelCheck) -> AspectSpan:
    """``aspects[index]`` of a JSONL line: ``{"term", "from", "to", ["label"]}``, checked against ``text``."""
    where = f"aspects[{index}]: "
    if not isinstance(aspect, dict):
        raise _LineError(f"{where}expected an object with 'term', 'from', 'to', got {_show(aspect)}")
    term = _term(aspect, "term", where)
    start, end = _offset(aspect, "from", where), _offset(aspect, "to", where)
    _check_span(text, term, start, end, f"{where}'from'={start} 'to'={end}")
    label = _label(aspect, "label", label_map, where) if aspect.get("label") is not None else None
    return AspectSpan(term, start, end, label)


def _scapt_span(text: str, index: int, aspect: Any, label_map: _LabelCheck) -> AspectSpan:
    """``aspect_terms[index]`` of a SCAPT line, checked against ``text``, labelled with its mapped sentiment."""
    where = f"aspect_terms[{index}]: "
    if not isinstance(aspect, dict):
        raise _LineError(
            f"{where}expected an object with 'aspect_term', 'sentiment', 'left_index', 'right_index', "
            f"got {_show(aspect)}"
        )
    term = _term(aspect, "aspect_term", where)
    start, end = _offset(aspect, "left_index", where), _offset(aspect, "right_index", where)
    _check_span(text, term, start, end, f"{where}'left_index'={start} 'right_index'={end}")
    return AspectSpan(term, start, end, _label(aspect, "sentiment", label_map, where))


def _term(aspect: Mapping[str, Any], name: str, where: str) -> str:
    if name not in aspect:
        raise _LineError(f"{where}missing field {name!r}")
    term = aspect[name]
    if not isinstance(term, str) or not term:
        raise _LineError(f"{where}field {name!r} must be a non-empty string, got {_show(term)}")
    return term


def _offset(aspect: Mapping[str, Any], name: str, where: str) -> int:
    if name not in aspect:
        raise _LineError(f"{where}missing field {name!r}")
    value = aspect[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _LineError(f"{where}field {name!r} must be an integer character offset, got {_show(value)}")
    return value


def _check_span(text: str, term: str, start: int, end: int, where: str) -> None:
    if not 0 <= start <= end <= len(text):
        raise _LineError(f"{where} do not fit the text (length {len(text)}): {_clip(text)!r}")
    if text[start:end] != term:
        raise _LineError(f"{where} select {text[start:end]!r}, not the term {term!r}, in {_clip(text)!r}")


def _checked_label_map(label_map: Mapping[Any, str] | None) -> dict[str, str] | None:
    """``label_map`` with string keys (``{1: "negative"}`` becomes ``{"1": "negative"}``); values must be names."""
    if label_map is None:
        return None
    checked: dict[str, str] = {}
    for key, value in label_map.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"label_map[{key!r}] must be a non-empty class name, got {value!r}")
        checked[str(key)] = value
    return checked


def _show(value: Any) -> str:
    """A JSON value as it appears in the file, shortened."""
    return _clip(json.dumps(value, ensure_ascii=False))


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------------
# De-duplication
# --------------------------------------------------------------------------------------------------


def eval_sentences(
    datasets: Sequence[str] | None = None,
    data_dir: PathLike | None = None,
    dev_fraction: float = DEV_FRACTION,
    split_seed: int = SPLIT_SEED,
) -> frozenset[str]:
    """The normalised texts (:func:`normalize_sentence`) of every dev and test sentence of ``datasets``.

    Args:
        datasets: names from :data:`scpt.data.absa.DATASETS`; ``None`` means all of them.
        data_dir: the data directory (default ``$SCPT_DATA_DIR``).
        dev_fraction, split_seed: the dev carve-out, as in phase 2 (:func:`scpt.data.absa.load_splits`).

    Raises:
        ValueError: an unknown dataset. Errors of :func:`scpt.data.absa.load_splits` (missing data).
    """
    names = tuple(DATASETS) if datasets is None else tuple(datasets)
    return _eval_texts({name: load_splits(name, data_dir, dev_fraction, split_seed) for name in names}, names)


def _eval_texts(splits: Mapping[str, Mapping[str, list[AspectInstance]]], names: Iterable[str]) -> frozenset[str]:
    return frozenset(
        normalize_sentence(instance.text) for name in names for split in EVAL_SPLITS for instance in splits[name][split]
    )


class _SentenceFilter:
    """Admits a sentence unless its normalised text is excluded or was admitted before; counts removals."""

    def __init__(self, exclude: Collection[str], report: CorpusReport) -> None:
        self.exclude, self.report = exclude, report
        self.seen: set[str] = set()

    def admit(self, text: str) -> bool:
        key = normalize_sentence(text)
        if key in self.exclude:
            self.report._count_removed("eval")
            return False
        if key in self.seen:
            self.report._count_removed("internal")
            return False
        self.seen.add(key)
        return True


def deduplicate(
    examples: Iterable[CorpusExample],
    exclude: Collection[str] = frozenset(),
    report: CorpusReport | None = None,
) -> list[CorpusExample]:
    """Drop whole sentences that occur in ``exclude`` or repeat an earlier sentence; keep the order.

    A sentence is the examples that share ``(source, text)`` (several in per-aspect mode); the rule is
    the module docstring's. ``report`` counts removed sentences (``removed_eval_overlap``,
    ``removed_internal``, ``removed_duplicates``); ``read`` and ``kept`` are the readers' and stay.

    Args:
        examples: the corpus.
        exclude: normalised texts to drop, normally :func:`eval_sentences`.
        report: counts to add to.
    """
    sentence_filter = _SentenceFilter(exclude, report if report is not None else CorpusReport())
    decided: dict[tuple[str, str], bool] = {}
    kept = []
    for example in examples:
        sentence = (example.source, example.text)
        if sentence not in decided:
            decided[sentence] = sentence_filter.admit(example.text)
        if decided[sentence]:
            kept.append(example)
    return kept


# --------------------------------------------------------------------------------------------------
# The in-domain corpus
# --------------------------------------------------------------------------------------------------


def in_domain_corpus(
    datasets: Sequence[str] = ("restaurants", "mams"),
    data_dir: PathLike | None = None,
    label_mode: LabelMode = "aspect",
    dedup_against: Sequence[str] | None = None,
    dev_fraction: float = DEV_FRACTION,
    split_seed: int = SPLIT_SEED,
    report: CorpusReport | None = None,
) -> list[CorpusExample]:
    """The pre-training corpus from the train splits of ABSA datasets, de-duplicated (module docstring).

    Args:
        datasets: names from :data:`scpt.data.absa.DATASETS` whose train split (after the dev
            carve-out) makes the corpus, in this order.
        data_dir: the data directory (default ``$SCPT_DATA_DIR``).
        label_mode: ``"aspect"``: one example per aspect term, ``target`` its span; ``"sentence"``:
            one example per sentence whose aspects share a polarity, mixed ones counted and dropped.
        dedup_against: datasets whose dev and test sentences are removed from the corpus; ``None``
            means all of :data:`scpt.data.absa.DATASETS`, ``()`` none.
        dev_fraction, split_seed: the dev carve-out; use phase 2's values so its dev split never
            leaks into pre-training.
        report: counts to add to: ``read`` = train sentences with aspects, ``removed_*`` = sentences,
            ``skipped_mixed`` = sentences, ``kept`` = examples, ``kept_sentences``.

    Returns:
        Examples in file order (datasets in the given order), labels in :data:`scpt.data.absa.POLARITIES`,
        ``source="<dataset>/train:<sentence id>"``.

    Raises:
        ValueError: unknown or repeated dataset, no dataset, unknown ``label_mode``. Errors of
            :func:`scpt.data.absa.load_splits` (no data directory, missing files, malformed XML).
    """
    if label_mode not in LABEL_MODES:
        raise ValueError(f"unknown label_mode {label_mode!r}; expected one of {LABEL_MODES}")
    datasets = tuple(datasets)
    against = tuple(DATASETS) if dedup_against is None else tuple(dedup_against)
    if not datasets:
        raise ValueError("in_domain_corpus needs at least one dataset")
    for names, what in ((datasets, "datasets"), (against, "dedup_against")):
        if len(set(names)) != len(names):
            raise ValueError(f"{what} names a dataset more than once: {names}")
        for name in names:
            dataset_spec(name)  # raises ValueError for an unknown name
    report = report if report is not None else CorpusReport()
    splits = {name: load_splits(name, data_dir, dev_fraction, split_seed) for name in dict.fromkeys(datasets + against)}
    sentence_filter = _SentenceFilter(_eval_texts(splits, against), report)
    examples: list[CorpusExample] = []
    for name in datasets:
        for sentence_id, instances in _sentences(splits[name]["train"]).items():
            report.read += 1
            if not sentence_filter.admit(instances[0].text):
                continue
            source = f"{name}/train:{sentence_id}"
            if label_mode == "aspect":
                examples.extend(_per_aspect_examples(instances, source))
            else:
                example = _sentence_example(instances, source)
                if example is None:
                    report.skipped_mixed += 1
                else:
                    examples.append(example)
    report._count_kept(examples)
    return examples


def _sentences(instances: Iterable[AspectInstance]) -> dict[str, list[AspectInstance]]:
    """Aspect instances grouped by sentence id, sentences and instances in file order."""
    sentences: dict[str, list[AspectInstance]] = {}
    for instance in instances:
        sentences.setdefault(instance.sentence_id, []).append(instance)
    return sentences


def _span(instance: AspectInstance) -> AspectSpan:
    return AspectSpan(instance.term, instance.start, instance.end, instance.polarity)


def _per_aspect_examples(instances: Sequence[AspectInstance], source: str) -> list[CorpusExample]:
    """One example per aspect term of a sentence, labelled with the term's polarity."""
    spans = tuple(_span(instance) for instance in instances)
    return [
        CorpusExample(instance.text, instance.polarity, spans, span, source) for instance, span in zip(instances, spans)
    ]


def _sentence_example(instances: Sequence[AspectInstance], source: str) -> CorpusExample | None:
    """The sentence as one example labelled with its aspects' common polarity; ``None`` if they differ."""
    polarities = {instance.polarity for instance in instances}
    if len(polarities) != 1:
        return None
    (polarity,) = polarities
    assert polarity in POLARITIES, polarity  # conflict terms are dropped by read_absa_xml
    return CorpusExample(instances[0].text, polarity, tuple(_span(instance) for instance in instances), None, source)


# --------------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------------

IN_DOMAIN = "in-domain"
"""The :func:`load_corpus` source naming :func:`in_domain_corpus` (``"in-domain:restaurants,mams"`` picks datasets)."""

FILE_FORMATS: tuple[str, ...] = ("auto", "jsonl", "scapt")


def load_corpus(
    source: str,
    *,
    file_format: Literal["auto", "jsonl", "scapt"] = "auto",
    label_map: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
    on_error: OnError = "raise",
    label_mode: LabelMode = "aspect",
    data_dir: PathLike | None = None,
    dedup_against: Sequence[str] | None = None,
    dev_fraction: float = DEV_FRACTION,
    split_seed: int = SPLIT_SEED,
    report: CorpusReport | None = None,
) -> list[CorpusExample]:
    """A corpus by name or path, de-duplicated against the evaluation splits.

    ``source`` is ``"in-domain"`` (restaurants + MAMS) or ``"in-domain:<dataset>,<dataset>"`` for
    :func:`in_domain_corpus` (``label_map`` / ``classes`` / ``on_error`` / ``file_format`` unused), or a file path.
    A file is read with :func:`read_scapt_json` or :func:`read_jsonl_corpus` (``file_format="auto"``
    picks SCAPT when the first non-blank line has an ``aspect_terms`` field), then passed through
    :func:`deduplicate` against :func:`eval_sentences` of ``dedup_against`` (``None``: all datasets,
    which needs the data directory; ``()``: no de-duplication). ``classes`` is the declared class set of
    the file's labels (module docstring, :func:`resolve_classes`).

    Raises:
        ValueError: unknown ``file_format`` or an in-domain dataset list that is empty or unknown.
        CorpusFormatError (UnknownLabelError), FileNotFoundError: from the readers.
    """
    report = report if report is not None else CorpusReport()
    if source == IN_DOMAIN or source.startswith(IN_DOMAIN + ":"):
        names = source[len(IN_DOMAIN) + 1 :].split(",") if ":" in source else ["restaurants", "mams"]
        return in_domain_corpus(
            [name.strip() for name in names if name.strip()],
            data_dir,
            label_mode,
            dedup_against,
            dev_fraction,
            split_seed,
            report,
        )
    if file_format not in FILE_FORMATS:
        raise ValueError(f"unknown file_format {file_format!r}; expected one of {FILE_FORMATS}")
    if file_format == "auto":
        file_format = "scapt" if _looks_like_scapt(Path(source)) else "jsonl"
    reader = read_scapt_json if file_format == "scapt" else read_jsonl_corpus
    counts = CorpusReport()
    examples = reader(source, label_map, on_error, counts, classes)
    if dedup_against is None or dedup_against:
        examples = deduplicate(examples, eval_sentences(dedup_against, data_dir, dev_fraction, split_seed), counts)
        counts.kept, counts.kept_sentences = 0, 0
        counts._count_kept(examples)
    report._add(counts)
    return examples


def _looks_like_scapt(path: Path) -> bool:
    """Whether the first non-blank line of ``path`` is a JSON object with an ``aspect_terms`` field."""
    with path.open("rb") as lines:
        for raw in lines:
            if raw.strip():
                try:
                    record = json.loads(raw.decode("utf-8-sig", errors="replace"))
                except json.JSONDecodeError:
                    return False
                return isinstance(record, dict) and "aspect_terms" in record
    return False
