"""Phase-1 corpora (scpt.data.corpus): the JSONL and SCAPT readers on hand-written files (exact examples,
every error with its file and line), sentence normalisation, de-duplication, and the in-domain corpus on
the released data (no dev/test sentence leaks, removal counts checked by an independent count, known sizes)."""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import scpt.data.corpus as corpus_module
from helpers import needs_data
from scpt.data.absa import DATASETS, POLARITIES, AspectInstance, load_splits
from scpt.data.corpus import (
    LABEL_MODES,
    SCAPT_LABEL_MAP,
    AspectSpan,
    CorpusExample,
    CorpusFormatError,
    CorpusReport,
    UnknownLabelError,
    deduplicate,
    eval_sentences,
    in_domain_corpus,
    load_corpus,
    normalize_sentence,
    read_jsonl_corpus,
    read_scapt_json,
    resolve_classes,
)

LABELS = {"0": "positive", "1": "negative", "2": "neutral"}


def write_lines(path: Path, lines: list[str | dict[str, Any]]) -> Path:
    """Write ``lines`` (dicts as JSON, strings verbatim) one per line."""
    path.write_text(
        "".join((json.dumps(line) if isinstance(line, dict) else line) + "\n" for line in lines), encoding="utf-8"
    )
    return path


# ---------------------------------------------------------------------------------------------------
# JSONL
# ---------------------------------------------------------------------------------------------------

FISH = {"text": "The fish was dry.", "label": 1, "aspects": [{"term": "fish", "from": 4, "to": 8, "label": 1}]}
STAFF = {
    "text": "Great staff, slow kitchen.",
    "label": "0",
    "aspects": [{"term": "staff", "from": 6, "to": 11}, {"term": "kitchen", "from": 18, "to": 25, "label": 1}],
}
FINE = {"text": "Fine.", "label": 2}


def test_jsonl_reads_exact_examples_with_label_map(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "corpus.jsonl", [FISH, "", "   ", STAFF, FINE])
    report = CorpusReport()
    examples = read_jsonl_corpus(path, label_map=LABELS, report=report)
    assert examples == [
        CorpusExample("The fish was dry.", "negative", (AspectSpan("fish", 4, 8, "negative"),), None, f"{path}:1"),
        CorpusExample(
            "Great staff, slow kitchen.",
            "positive",
            (AspectSpan("staff", 6, 11, None), AspectSpan("kitchen", 18, 25, "negative")),
            None,
            f"{path}:4",
        ),
        CorpusExample("Fine.", "neutral", (), None, f"{path}:5"),
    ]
    assert (report.read, report.skipped_malformed, report.kept, report.kept_sentences) == (3, 0, 3, 3)


def test_jsonl_without_label_map_keeps_labels_as_strings(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "corpus.jsonl", [FISH, STAFF, {"text": "Meh.", "label": "neutral"}])
    examples = read_jsonl_corpus(path)
    assert [example.label for example in examples] == ["1", "0", "neutral"]
    assert examples[0].aspects == (AspectSpan("fish", 4, 8, "1"),)


def test_jsonl_label_map_keys_may_be_integers_and_bom_and_crlf_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(FINE).encode() + b"\r\n" + json.dumps(FISH).encode() + b"\r\n")
    examples = read_jsonl_corpus(path, label_map={2: "neutral", 1: "negative"})
    assert [(example.text, example.label) for example in examples] == [("Fine.", "neutral"), (FISH["text"], "negative")]


BAD_JSONL_LINES = [
    # (line, words the message must contain)
    pytest.param({**FISH, "aspects": [{"term": "fish", "from": 5, "to": 9}]}, ["aspects[0]", "'from'=5", "'fish'"], id="span-mismatch"),  # noqa: E501
    pytest.param({**FISH, "aspects": [{"term": "fish", "from": 4, "to": 80}]}, ["'to'=80", "length 17"], id="span-outside"),  # noqa: E501
    pytest.param({**FISH, "aspects": [{"term": "fish", "from": "4", "to": 8}]}, ["'from'", '"4"'], id="offset-string"),
    pytest.param({**FISH, "aspects": [{"from": 4, "to": 8}]}, ["aspects[0]", "'term'"], id="term-missing"),
    pytest.param({**FISH, "aspects": {"term": "fish"}}, ["'aspects'", "list"], id="aspects-not-list"),
    pytest.param('{"text": "The fish", "label": 1', ["not valid JSON"], id="bad-json"),
    pytest.param('["The fish", 1]', ["JSON object"], id="not-object"),
    pytest.param({"label": 1}, ["missing field 'text'"], id="text-missing"),
    pytest.param({"text": "  ", "label": 1}, ["'text'", "empty"], id="text-blank"),
    pytest.param({"text": 7, "label": 1}, ["'text'", "7"], id="text-not-string"),
    pytest.param({"text": "Fine."}, ["missing field 'label'"], id="label-missing"),
    pytest.param({"text": "Fine.", "label": 7}, ["'label'", "7", "label map"], id="label-unknown"),
    pytest.param({"text": "Fine.", "label": True}, ["'label'", "true"], id="label-bool"),
    pytest.param({**FISH, "aspects": [{"term": "fish", "from": 4, "to": 8, "label": 9}]}, ["aspects[0]", "'label'", "9"], id="aspect-label-unknown"),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(("bad", "words"), BAD_JSONL_LINES)
def test_jsonl_malformed_line_names_file_line_and_field(tmp_path: Path, bad: str | dict[str, Any], words: list[str]) -> None:  # fmt: skip  # noqa: E501
    path = write_lines(tmp_path / "my-corpus.jsonl", [FISH, "", STAFF, bad, FINE])
    with pytest.raises(CorpusFormatError) as raised:
        read_jsonl_corpus(path, label_map=LABELS)
    message = str(raised.value)
    assert message.startswith(f"{path}:4: ")
    assert "my-corpus.jsonl" in message
    for word in words:
        assert word in message


def test_jsonl_skip_keeps_good_lines_and_counts_bad_ones(tmp_path: Path) -> None:
    bad = [line.values[0] for line in BAD_JSONL_LINES]
    lines: list[str | dict[str, Any]] = [FISH, bad[0], "", bad[5], STAFF, bad[8], bad[11], FINE, ""]
    path = write_lines(tmp_path / "corpus.jsonl", lines)
    report = CorpusReport()
    examples = read_jsonl_corpus(path, label_map=LABELS, on_error="skip", report=report)
    assert [(example.text, example.source) for example in examples] == [
        (FISH["text"], f"{path}:1"),
        (STAFF["text"], f"{path}:5"),
        (FINE["text"], f"{path}:8"),
    ]
    # line 7's label 7 is not a key of the label map: skipped as an unknown label, not as malformed
    assert (report.read, report.skipped_malformed, report.skipped_unknown_label, report.kept) == (7, 3, 1, 3)
    assert report.unknown_labels == {"7": 1}
    assert [message.split(": ")[0] for message in report.errors] == [f"{path}:{n}" for n in (2, 4, 6, 7)]
    assert f"first skipped line: {path}:2: aspects[0]" in report.summary()


def test_reports_add_up_over_files(tmp_path: Path) -> None:
    report = CorpusReport()
    read_jsonl_corpus(write_lines(tmp_path / "a.jsonl", [FISH, FINE]), LABELS, report=report)
    read_jsonl_corpus(write_lines(tmp_path / "b.jsonl", [STAFF, {"text": "x"}]), LABELS, "skip", report)
    assert (report.read, report.skipped_malformed, report.kept) == (4, 1, 3)


def test_reader_argument_errors(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "corpus.jsonl", [FINE])
    with pytest.raises(ValueError, match="on_error"):
        read_jsonl_corpus(path, on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"label_map\['2'\]"):
        read_jsonl_corpus(path, label_map={"2": ""})
    with pytest.raises(FileNotFoundError):
        read_jsonl_corpus(tmp_path / "missing.jsonl")


# ---------------------------------------------------------------------------------------------------
# Labels against the declared classes
# ---------------------------------------------------------------------------------------------------

ABSA_CLASSES = ["positive", "negative", "neutral"]
TYPO = {"text": "Bad wine.", "label": "positve"}
CAPITAL = {"text": "Slow service.", "label": "Negative"}


@pytest.mark.parametrize(("bad", "expected"), [
    pytest.param(TYPO, 'field \'label\' value "positve" is not a known class (known classes: \'positive\', '
                 "'negative', 'neutral'); did you mean 'positive'?", id="typo"),
    pytest.param(CAPITAL, 'field \'label\' value "Negative" is not a known class (known classes: \'positive\', '
                 "'negative', 'neutral'); did you mean 'negative'? labels are compared case-sensitively", id="case"),
    pytest.param({"text": "Meh.", "label": "mixed"}, 'field \'label\' value "mixed" is not a known class (known '
                 "classes: 'positive', 'negative', 'neutral')", id="unrelated"),
    pytest.param({**FISH, "label": "negative", "aspects": [{"term": "fish", "from": 4, "to": 8, "label": "bad"}]},
                 'aspects[0]: field \'label\' value "bad" is not a known class (known classes: \'positive\', '
                 "'negative', 'neutral')", id="aspect-label"),
])  # fmt: skip
def test_unknown_label_is_an_error_naming_file_line_and_classes(tmp_path: Path, bad: dict, expected: str) -> None:
    path = write_lines(tmp_path / "mine.jsonl", [{"text": "Great food.", "label": "positive"}, "", bad])
    with pytest.raises(UnknownLabelError) as raised:
        read_jsonl_corpus(path, classes=ABSA_CLASSES)
    assert str(raised.value) == f"{path}:3: {expected}"
    assert isinstance(raised.value, CorpusFormatError)  # a kind of malformed line, for callers catching those


def test_unknown_labels_are_skipped_counted_and_reported(tmp_path: Path) -> None:
    lines = [{"text": "Great food.", "label": "positive"}, TYPO, CAPITAL, {"text": "x"}, TYPO, FINE]
    path = write_lines(tmp_path / "mine.jsonl", lines)
    report = CorpusReport()
    examples = read_jsonl_corpus(path, label_map=None, on_error="skip", report=report, classes=ABSA_CLASSES)
    assert [example.label for example in examples] == ["positive"]  # FINE's label is 2: not a class either
    assert (report.read, report.skipped_malformed, report.skipped_unknown_label, report.kept) == (6, 1, 4, 1)
    assert report.unknown_labels == {"positve": 2, "Negative": 1, "2": 1}
    assert report.summary() == (
        "read 6 sentences; skipped 1 malformed, 4 with an unknown label ('positve' 2, 'Negative' 1, '2' 1), "
        "0 mixed-polarity; removed 0 duplicates (0 in dev/test splits, 0 repeated); kept 1 examples from 1 "
        f"sentences; first skipped line: {path}:2: field 'label' value \"positve\" is not a known class (known "
        "classes: 'positive', 'negative', 'neutral'); did you mean 'positive'?"
    )
    other = CorpusReport()
    read_jsonl_corpus(path, on_error="skip", report=other, classes=ABSA_CLASSES)
    report._add(other)  # reports add up over files, per label too
    assert report.skipped_unknown_label == 8 and report.unknown_labels == {"positve": 4, "Negative": 2, "2": 2}


def test_label_map_values_are_the_classes_and_a_missing_key_names_them(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "mine.jsonl", [{"text": "Great.", "label": "pos"}, {"text": "Bad.", "label": "Neg"}])
    with pytest.raises(UnknownLabelError) as raised:
        read_jsonl_corpus(path, label_map={"pos": "positive", "neg": "negative"})
    assert str(raised.value) == (
        f"{path}:2: field 'label' value \"Neg\" is not in the label map (keys: 'pos', 'neg'; known classes: "
        "'positive', 'negative'); did you mean 'neg'? labels are compared case-sensitively"
    )
    assert resolve_classes(None, {"1": "negative", "5": "positive", "4": "positive"}) == ("negative", "positive")
    assert resolve_classes(None, None) is None  # library use without a declared set: labels kept unchecked
    assert resolve_classes(["b", "a"], {"x": "a"}) == ("b", "a")


@pytest.mark.parametrize(("classes", "label_map", "words"), [
    ([], None, "non-empty list"),
    ("positive", None, "non-empty list"),
    (["positive", "positive"], None, "more than once"),
    (["positive", ""], None, "non-empty string"),
    (["positive"], {"1": "negative", "5": "positive"}, "label_map renames labels to ['negative'], which are not in"),
])  # fmt: skip
def test_invalid_classes_are_rejected(classes: Any, label_map: dict[str, str] | None, words: str) -> None:
    with pytest.raises(ValueError) as raised:
        resolve_classes(classes, label_map)
    assert words in str(raised.value)


def test_scapt_ratings_are_checked_against_the_classes(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "yelp.json", [SCAPT_POSITIVE, SCAPT_NEGATIVE])
    with pytest.raises(ValueError, match=r"label_map renames labels to \['negative'\]"):
        read_scapt_json(path, classes=["positive"])  # SCAPT's default map: 1 -> negative, 5 -> positive
    rated = write_lines(tmp_path / "rated.json", [{**SCAPT_NEGATIVE, "aspect_terms": [{**FRIES, "sentiment": 3}]}])
    report = CorpusReport()
    assert read_scapt_json(rated, on_error="skip", report=report) == []
    assert (report.skipped_unknown_label, report.unknown_labels) == (1, {"3": 1})


def test_load_corpus_passes_the_classes(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "mine.jsonl", [{"text": "Great food.", "label": "positive"}, CAPITAL])
    with pytest.raises(UnknownLabelError, match=f"{path}:2: .*did you mean 'negative'"):
        load_corpus(str(path), classes=ABSA_CLASSES, dedup_against=())


# ---------------------------------------------------------------------------------------------------
# SCAPT JSON
# ---------------------------------------------------------------------------------------------------

# A line as released (the sample in SCAPT-ABSA's data), and a negative one in the same format.
SCAPT_POSITIVE = {
    "text": "The design is sleek and elegant, yet the case can stand up to a good beating.",
    "tokens": ["the", "design", "is", "sleek", "and", "elegant", ",", "yet", "the", "case", "can", "stand", "up",
               "to", "a", "good", "beating", "."],
    "aspect_terms": [
        {"aspect_term": "design", "left_index": 4, "right_index": 10, "sentiment": 5},
        {"aspect_term": "case", "left_index": 41, "right_index": 45, "sentiment": 5},
        {"aspect_term": "stand", "left_index": 50, "right_index": 55, "sentiment": 5},
    ],
}  # fmt: skip
SCAPT_NEGATIVE = {
    "text": "Cold fries and a rude waiter.",
    "tokens": ["cold", "fries", "and", "a", "rude", "waiter", "."],
    "aspect_terms": [
        {"aspect_term": "fries", "left_index": 5, "right_index": 10, "sentiment": "1"},
        {"aspect_term": "waiter", "left_index": 22, "right_index": 28, "sentiment": 1},
    ],
}
SCAPT_MIXED = {
    "text": "Cold fries, lovely waiter.",
    "aspect_terms": [
        {"aspect_term": "fries", "left_index": 5, "right_index": 10, "sentiment": 1},
        {"aspect_term": "waiter", "left_index": 19, "right_index": 25, "sentiment": 5},
    ],
}


def test_scapt_reads_exact_examples(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "yelp.json", [SCAPT_POSITIVE, "", SCAPT_NEGATIVE])
    report = CorpusReport()
    assert read_scapt_json(path, report=report) == [
        CorpusExample(
            SCAPT_POSITIVE["text"],
            "positive",
            (AspectSpan("design", 4, 10, "positive"), AspectSpan("case", 41, 45, "positive"),
             AspectSpan("stand", 50, 55, "positive")),
            None,
            f"{path}:1",
        ),
        CorpusExample(
            "Cold fries and a rude waiter.",
            "negative",
            (AspectSpan("fries", 5, 10, "negative"), AspectSpan("waiter", 22, 28, "negative")),
            None,
            f"{path}:3",
        ),
    ]  # fmt: skip
    assert (report.read, report.kept) == (2, 2)
    assert dict(SCAPT_LABEL_MAP) == {"1": "negative", "5": "positive"}


def test_scapt_custom_label_map_replaces_the_default(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "yelp.json", [SCAPT_POSITIVE, SCAPT_NEGATIVE])
    assert [e.label for e in read_scapt_json(path, label_map={"1": "bad", "5": "good"})] == ["good", "bad"]


def with_terms(terms: Any) -> dict[str, Any]:
    return {"text": SCAPT_NEGATIVE["text"], "aspect_terms": terms}


FRIES = {"aspect_term": "fries", "left_index": 5, "right_index": 10, "sentiment": 1}
BAD_SCAPT_LINES = [
    pytest.param(SCAPT_MIXED, ["disagree", "'fries': negative", "'waiter': positive"], id="mixed"),
    pytest.param(with_terms([]), ["'aspect_terms'", "non-empty"], id="no-terms"),
    pytest.param({"text": "Cold fries."}, ["missing field 'aspect_terms'"], id="terms-missing"),
    pytest.param(with_terms([{**FRIES, "sentiment": 3}]), ["aspect_terms[0]", "'sentiment'", "3", "label map"], id="rating-3"),  # noqa: E501
    pytest.param(with_terms([{**FRIES, "left_index": 1, "right_index": 2}]), ["'left_index'=1", "'fries'"], id="token-indices"),  # noqa: E501
    pytest.param(with_terms([FRIES, {"aspect_term": "waiter", "sentiment": 1}]), ["aspect_terms[1]", "'left_index'"], id="offset-missing"),  # noqa: E501
    pytest.param({"aspect_terms": [FRIES]}, ["missing field 'text'"], id="text-missing"),
]  # fmt: skip


@pytest.mark.parametrize(("bad", "words"), BAD_SCAPT_LINES)
def test_scapt_malformed_line_names_file_line_and_field(tmp_path: Path, bad: dict[str, Any], words: list[str]) -> None:
    path = write_lines(tmp_path / "amazon.json", [SCAPT_POSITIVE, SCAPT_NEGATIVE, bad])
    with pytest.raises(CorpusFormatError) as raised:
        read_scapt_json(path)
    assert str(raised.value).startswith(f"{path}:3: ")
    for word in words:
        assert word in str(raised.value)


def test_scapt_skip_counts_disagreeing_and_malformed_lines(tmp_path: Path) -> None:
    lines = [SCAPT_MIXED, SCAPT_POSITIVE, with_terms([]), SCAPT_NEGATIVE, SCAPT_MIXED]
    report = CorpusReport()
    examples = read_scapt_json(write_lines(tmp_path / "yelp.json", lines), on_error="skip", report=report)
    assert [example.label for example in examples] == ["positive", "negative"]
    assert (report.read, report.skipped_malformed, report.skipped_mixed, report.kept) == (5, 3, 0, 2)


# ---------------------------------------------------------------------------------------------------
# Normalisation, examples, reports, de-duplication
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "normalised"), [
    ("The FOOD was Great.", "the food was great."),
    ("  the\tfood\n was   great. ", "the food was great."),
    ("\xa0The\xa0\xa0food was great.", "the food was great."),  # no-break spaces (Laptop train)
    ("the food\u2009was\u3000great.", "the food was great."),  # thin and ideographic spaces
    ("ﬁne ｆｏｏｄ", "fine food"),  # NFKC: ligature, full-width letters
    ("Straße", "strasse"),  # casefold, not lower
    ("", ""),
])  # fmt: skip
def test_normalize_sentence(text: str, normalised: str) -> None:
    assert normalize_sentence(text) == normalised


def test_example_rejects_a_span_that_is_not_its_term() -> None:
    with pytest.raises(ValueError, match="'ish ', not the term 'fish'"):
        CorpusExample("The fish was dry.", "negative", (AspectSpan("fish", 5, 9),), source="x:1")
    with pytest.raises(ValueError, match="not the term"):
        CorpusExample("The fish.", "negative", target=AspectSpan("fish", 4, 20))


def test_report_summary() -> None:
    report = CorpusReport(read=10, skipped_malformed=1, skipped_mixed=2, removed_duplicates=3, kept=9,
                          removed_eval_overlap=2, removed_internal=1, kept_sentences=4)  # fmt: skip
    assert report.summary() == (
        "read 10 sentences; skipped 1 malformed, 2 mixed-polarity; removed 3 duplicates (2 in dev/test splits, "
        "1 repeated); kept 9 examples from 4 sentences"
    )


def test_deduplicate_drops_whole_sentences_in_order() -> None:
    food, bad = AspectSpan("food", 4, 8, "positive"), AspectSpan("service", 22, 29, "negative")
    text = "The food was good but service slow."
    examples = [
        CorpusExample(text, "positive", (food, bad), food, "a:1"),  # one sentence, two aspects: both kept
        CorpusExample(text, "negative", (food, bad), bad, "a:1"),
        CorpusExample("Excluded  sentence.", "neutral", (), None, "a:2"),
        CorpusExample("THE FOOD was good but service slow.", "positive", (), None, "b:1"),  # repeat of a:1
        CorpusExample("Kept.", "neutral", (), None, "b:2"),
    ]
    report = CorpusReport()
    kept = deduplicate(examples, exclude={"excluded sentence."}, report=report)
    assert kept == [examples[0], examples[1], examples[4]]
    assert (report.removed_eval_overlap, report.removed_internal, report.removed_duplicates) == (1, 1, 2)


def test_load_corpus_picks_the_format_and_may_skip_dedup(tmp_path: Path) -> None:
    scapt = write_lines(tmp_path / "yelp.json", [SCAPT_POSITIVE])
    jsonl = write_lines(tmp_path / "mine.json", [FINE])
    assert load_corpus(str(scapt), dedup_against=())[0].label == "positive"
    assert load_corpus(str(jsonl), dedup_against=(), label_map=LABELS)[0].label == "neutral"
    with pytest.raises(CorpusFormatError, match="aspect_terms"):
        load_corpus(str(jsonl), file_format="scapt", dedup_against=())


# ---------------------------------------------------------------------------------------------------
# The in-domain corpus on the released data
# ---------------------------------------------------------------------------------------------------

Sentence = tuple[str, str, tuple[AspectInstance, ...]]  # (dataset, sentence id, its instances)


@pytest.fixture(scope="module", autouse=True)
def parse_each_file_once() -> Iterator[None]:
    """The corpus functions re-read the XML on every call (~1 s); here they share one parse per dataset."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(corpus_module, "load_splits", functools.cache(load_splits))
        yield


@pytest.fixture(scope="module")
def splits() -> dict[str, dict[str, list[AspectInstance]]]:
    return {name: load_splits(name) for name in DATASETS}


@pytest.fixture(scope="module")
def eval_texts(splits: dict[str, dict[str, list[AspectInstance]]]) -> set[str]:
    """Normalised text of every dev and test sentence of every dataset, computed here from load_splits."""
    return {normalize_sentence(i.text) for name in DATASETS for split in ("dev", "test") for i in splits[name][split]}


def train_sentences(splits: dict[str, dict[str, list[AspectInstance]]], names: tuple[str, ...]) -> list[Sentence]:
    grouped: dict[tuple[str, str], list[AspectInstance]] = {}
    for name in names:
        for instance in splits[name]["train"]:
            grouped.setdefault((name, instance.sentence_id), []).append(instance)
    return [(name, sentence_id, tuple(instances)) for (name, sentence_id), instances in grouped.items()]


@pytest.fixture(scope="module")
def aspect_corpus() -> tuple[list[CorpusExample], CorpusReport]:
    report = CorpusReport()
    return in_domain_corpus(("restaurants", "mams"), label_mode="aspect", report=report), report


@pytest.fixture(scope="module")
def sentence_corpus() -> tuple[list[CorpusExample], CorpusReport]:
    report = CorpusReport()
    return in_domain_corpus(("restaurants", "mams"), label_mode="sentence", report=report), report


def counts(report: CorpusReport) -> tuple[int, ...]:
    return (report.read, report.removed_eval_overlap, report.removed_internal, report.removed_duplicates,
            report.skipped_mixed, report.kept, report.kept_sentences)  # fmt: skip


@needs_data
def test_in_domain_known_counts(aspect_corpus, sentence_corpus) -> None:
    # read, removed (eval overlap, repeats, total), skipped mixed, kept examples, kept sentences
    assert counts(aspect_corpus[1]) == (6169, 266, 56, 322, 0, 13717, 5847)
    assert counts(sentence_corpus[1]) == (6169, 266, 56, 322, 4436, 1411, 1411)
    report = CorpusReport()
    in_domain_corpus(("restaurants",), report=report)
    assert counts(report) == (1872, 239, 1, 240, 0, 2749, 1632)


@needs_data
def test_in_domain_keeps_no_dev_or_test_sentence(aspect_corpus, sentence_corpus, eval_texts) -> None:
    for examples, _ in (aspect_corpus, sentence_corpus):
        assert examples
        assert not [e.source for e in examples if normalize_sentence(e.text) in eval_texts]


@needs_data
def test_in_domain_removals_match_an_independent_count(aspect_corpus, splits, eval_texts) -> None:
    sentences = train_sentences(splits, ("restaurants", "mams"))
    overlapping = [s for s in sentences if normalize_sentence(s[2][0].text) in eval_texts]
    rest = [s for s in sentences if normalize_sentence(s[2][0].text) not in eval_texts]
    repeats = len(rest) - len({normalize_sentence(s[2][0].text) for s in rest})
    _, report = aspect_corpus
    assert report.read == len(sentences)
    assert report.removed_eval_overlap == len(overlapping) > 0
    assert report.removed_internal == repeats > 0
    assert report.removed_duplicates == len(overlapping) + repeats


@needs_data
def test_mams_train_sentences_in_restaurant_test_are_removed(aspect_corpus, splits) -> None:
    restaurant_test = {normalize_sentence(i.text) for i in splits["restaurants"]["test"]}
    shared = {(name, sid) for name, sid, inst in train_sentences(splits, ("mams",))
              if normalize_sentence(inst[0].text) in restaurant_test}  # fmt: skip
    assert len(shared) == 9  # docs/design.md §5
    kept_sources = {example.source for example in aspect_corpus[0]}
    assert not {f"{name}/train:{sid}" for name, sid in shared} & kept_sources


@needs_data
def test_in_domain_aspect_mode_is_one_example_per_aspect(aspect_corpus, splits, eval_texts) -> None:
    examples, _ = aspect_corpus
    by_source: dict[str, list[CorpusExample]] = {}
    for example in examples:
        by_source.setdefault(example.source, []).append(example)
    texts = [normalize_sentence(group[0].text) for group in by_source.values()]
    assert len(texts) == len(set(texts))  # no sentence twice
    sentences = {f"{name}/train:{sid}": inst for name, sid, inst in train_sentences(splits, ("restaurants", "mams"))}
    for source, group in by_source.items():
        instances = sentences[source]
        spans = tuple(AspectSpan(i.term, i.start, i.end, i.polarity) for i in instances)
        assert [e.target for e in group] == list(spans)
        assert [e.label for e in group] == [i.polarity for i in instances]
        assert {e.aspects for e in group} == {spans} and {e.text for e in group} == {instances[0].text}
    assert {e.label for e in examples} == set(POLARITIES)
    assert Counter(e.source.split("/")[0] for e in examples) == {"restaurants": 2749, "mams": 13717 - 2749}


@needs_data
def test_in_domain_sentence_mode_keeps_single_polarity_sentences(sentence_corpus, aspect_corpus) -> None:
    examples, report = sentence_corpus
    for example in examples:
        assert example.target is None and example.label in POLARITIES
        assert {span.label for span in example.aspects} == {example.label}
    # MAMS has no single-polarity sentence; every kept aspect-mode sentence is either kept or mixed here.
    assert not [e for e in examples if e.source.startswith("mams/")]
    aspect_sentences: dict[str, set[str]] = {}
    for example in aspect_corpus[0]:
        aspect_sentences.setdefault(example.source, set()).add(example.label)
    assert report.skipped_mixed == sum(len(labels) > 1 for labels in aspect_sentences.values()) > 0
    assert [e.source for e in examples] == [s for s, labels in aspect_sentences.items() if len(labels) == 1]


@needs_data
def test_in_domain_is_deterministic(aspect_corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus_module, "load_splits", load_splits)  # read the files again
    assert in_domain_corpus(("restaurants", "mams")) == aspect_corpus[0]


@needs_data
def test_in_domain_without_dedup_against_keeps_eval_sentences(eval_texts) -> None:
    report = CorpusReport()
    examples = in_domain_corpus(("restaurants",), dedup_against=(), report=report)
    assert (report.removed_eval_overlap, report.removed_internal, report.kept_sentences) == (0, 2, 1870)
    assert any(normalize_sentence(e.text) in eval_texts for e in examples)


@needs_data
def test_in_domain_argument_errors() -> None:
    with pytest.raises(ValueError, match="label_mode"):
        in_domain_corpus(label_mode="review")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown dataset 'yelp'"):
        in_domain_corpus(("restaurants", "yelp"))
    with pytest.raises(ValueError, match="more than once"):
        in_domain_corpus(("mams", "mams"))
    with pytest.raises(ValueError, match="at least one"):
        in_domain_corpus(())
    assert LABEL_MODES == ("aspect", "sentence")


@needs_data
def test_load_corpus_removes_eval_sentences_from_a_file(tmp_path: Path, splits) -> None:
    test_sentence = splits["restaurants"]["test"][0].text
    disguised = "  " + test_sentence.upper().replace(" ", "\xa0 ")
    path = write_lines(tmp_path / "mine.jsonl", [FINE, {"text": disguised, "label": 0}, FINE, FISH])
    report = CorpusReport()
    examples = load_corpus(str(path), label_map=LABELS, report=report)
    assert [e.source for e in examples] == [f"{path}:1", f"{path}:4"]
    assert counts(report) == (4, 1, 1, 2, 0, 2, 2)
    assert normalize_sentence(test_sentence) in eval_sentences(["restaurants"])
    in_domain = load_corpus("in-domain:restaurants", label_mode="sentence")
    assert len(in_domain) == 1411
