"""The ABSA reader, registry and splits: exact counts on the released files, every error, the dev split."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from helpers import DATA_DIR, needs_data  # noqa: E402
from scpt import cli
from scpt.data.absa import (
    DATASETS,
    POLARITIES,
    AspectInstance,
    DataDirError,
    DataFormatError,
    load_splits,
    read_absa_xml,
    resolve_data_dir,
    stratified_split,
    stratum,
)

# (file, total, positive, negative, neutral, implicit) after dropping conflict: docs/design.md §5.
KNOWN_COUNTS = [
    ("restaurants/Restaurants_Train_v2_Implicit_Labeled.xml", 3602, 2164, 805, 633, 1030),
    ("restaurants/Restaurants_Test_Gold_Implicit_Labeled.xml", 1120, 728, 196, 196, 267),
    ("laptops/Laptops_Train_v2_Implicit_Labeled.xml", 2313, 987, 866, 460, 716),
    ("laptops/Laptops_Test_Gold_Implicit_Labeled.xml", 638, 341, 128, 169, 175),
    ("mams/train.xml", 11186, 3380, 2764, 5042, None),
    ("mams/val.xml", 1332, 403, 325, 604, None),
    ("mams/test.xml", 1336, 400, 329, 607, None),
]


@cache
def read_real(relative: str, keep_conflict: bool = False) -> tuple[AspectInstance, ...]:
    return tuple(read_absa_xml(DATA_DIR / relative, keep_conflict=keep_conflict))


def polarity_implicit_counts(instances: tuple[AspectInstance, ...] | list[AspectInstance]) -> tuple[int, ...]:
    polarity = Counter(instance.polarity for instance in instances)
    return (len(instances), *(polarity[name] for name in POLARITIES), sum(i.implicit is True for i in instances))


# ---------------------------------------------------------------------------------------------------
# The released files
# ---------------------------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize(("relative", "total", "positive", "negative", "neutral", "implicit"), KNOWN_COUNTS)
def test_known_counts(
    relative: str, total: int, positive: int, negative: int, neutral: int, implicit: int | None
) -> None:
    instances = read_real(relative)
    expected_implicit = 0 if implicit is None else implicit
    assert polarity_implicit_counts(instances) == (total, positive, negative, neutral, expected_implicit)
    if implicit is None:  # MAMS has no implicit labels
        assert {instance.implicit for instance in instances} == {None}
    else:
        assert sum(instance.implicit is False for instance in instances) == total - implicit


@needs_data
@pytest.mark.parametrize(("relative", "conflicts"), [
    ("restaurants/Restaurants_Train_v2_Implicit_Labeled.xml", 91),
    ("restaurants/Restaurants_Test_Gold_Implicit_Labeled.xml", 14),
    ("laptops/Laptops_Train_v2_Implicit_Labeled.xml", 45),
    ("laptops/Laptops_Test_Gold_Implicit_Labeled.xml", 16),
])  # fmt: skip
def test_keep_conflict_adds_unlabelled_conflict_terms(relative: str, conflicts: int) -> None:
    kept = read_real(relative, keep_conflict=True)
    conflict = [instance for instance in kept if instance.polarity == "conflict"]
    assert len(conflict) == conflicts
    assert len(kept) == len(read_real(relative)) + conflicts
    assert {instance.implicit for instance in conflict} == {None}


@needs_data
@pytest.mark.parametrize(("plain", "labelled"), [
    ("restaurants/Restaurants_Train_v2.xml", "restaurants/Restaurants_Train_v2_Implicit_Labeled.xml"),
    ("laptops/Laptops_Test_Gold.xml", "laptops/Laptops_Test_Gold_Implicit_Labeled.xml"),
])  # fmt: skip
def test_plain_semeval_files_match_labelled_ones_without_labels(plain: str, labelled: str) -> None:
    plain_instances, labelled_instances = read_real(plain), read_real(labelled)
    assert {instance.implicit for instance in plain_instances} == {None}
    assert {instance.opinion_words for instance in plain_instances} == {()}
    strip = [(i.sentence_id, i.text, i.term, i.start, i.end, i.polarity) for i in labelled_instances]
    assert [(i.sentence_id, i.text, i.term, i.start, i.end, i.polarity) for i in plain_instances] == strip


@needs_data
def test_every_span_matches_and_raw_whitespace_is_kept() -> None:
    for relative, *_ in KNOWN_COUNTS:
        for instance in read_real(relative):
            assert instance.text[instance.start : instance.end] == instance.term
            assert instance.term == instance.term.strip()
    by_key = {(i.sentence_id, i.term): i for i in read_real(KNOWN_COUNTS[2][0])}
    gui = by_key[("917", "GUI")]
    assert gui.text.startswith("\xa0One night")  # leading NBSP kept: the offsets count it
    assert (gui.start, gui.end) == (89, 92)


@needs_data
def test_term_with_trailing_nbsp_is_trimmed_with_its_offsets() -> None:
    (instance,) = [i for i in read_real(KNOWN_COUNTS[2][0]) if i.sentence_id == "1436" and "uninstall" in i.term]
    # The file says term="uninstall\xa0" from=44 to=54.
    assert (instance.term, instance.start, instance.end) == ("uninstall", 44, 53)
    assert instance.implicit is True and instance.polarity == "negative"


@needs_data
def test_opinion_words_are_space_separated_tokens() -> None:
    instances = read_real(KNOWN_COUNTS[0][0])
    by_key = {(i.sentence_id, i.term): i for i in instances}
    assert by_key[("2777", "food")].opinion_words == ("above", "average")
    assert by_key[("3121", "staff")].opinion_words == ("horrible",)
    assert by_key[("1316", "food")].opinion_words == ("o.k.", ",", "not", "any", "better")
    assert by_key[("1634", "menu")].implicit is True and by_key[("1634", "menu")].opinion_words == ()
    assert all(i.opinion_words == () for i in instances if i.implicit)
    assert all(i.opinion_words for i in instances if i.implicit is False)


@needs_data
def test_mams_ids_are_stem_and_index() -> None:
    instances = read_real("mams/val.xml")
    assert instances[0].sentence_id == "val:0"
    assert instances[-1].sentence_id == "val:499"  # 500 sentences
    assert [(i.term, i.start, i.end, i.polarity) for i in instances[:3]] == [
        ("drinks", 18, 24, "neutral"),
        ("roll", 68, 72, "positive"),
        ("cripsy squid", 81, 93, "positive"),
    ]
    assert {i.sentence_id for i in instances[:3]} == {"val:0"} and instances[3].sentence_id == "val:1"


def test_polarity_order_is_class_order() -> None:
    assert POLARITIES == ("positive", "negative", "neutral")
    instance = AspectInstance("s", "good food", "food", 5, 9, "negative", None, ())
    assert instance.label == 1
    with pytest.raises(ValueError, match="conflict"):
        _ = AspectInstance("s", "good food", "food", 5, 9, "conflict", None, ()).label


# ---------------------------------------------------------------------------------------------------
# Format errors, on small files
# ---------------------------------------------------------------------------------------------------


def write_xml(tmp_path: Path, body: str, name: str = "bad.xml") -> Path:
    path = tmp_path / name
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<sentences>\n{body}\n</sentences>\n', encoding="utf-8")
    return path


def semeval_sentence(sentence_id: str, text: str, *terms: str) -> str:
    return f'<sentence id="{sentence_id}"><text>{text}</text><aspectTerms>{"".join(terms)}</aspectTerms></sentence>'


GOOD = '<aspectTerm term="food" polarity="positive" from="4" to="8"/>'


def test_small_semeval_file_reads(tmp_path: Path) -> None:
    path = write_xml(tmp_path, semeval_sentence("s1", "The food was great", GOOD) + semeval_sentence("s2", "Hi."))
    assert read_absa_xml(path) == [AspectInstance("s1", "The food was great", "food", 4, 8, "positive", None, ())]


@pytest.mark.parametrize(("term_xml", "offending"), [
    ('<aspectTerm term="food" polarity="positive" from="5" to="9"/>', "'ood '"),
    ('<aspectTerm term="food" polarity="delicious" from="4" to="8"/>', "'delicious'"),
    ('<aspectTerm term="food" polarity="Positive" from="4" to="8"/>',
     "unknown polarity 'Positive'; expected one of ('positive', 'negative', 'neutral', 'conflict'); did you mean "
     "'positive'? polarities are compared case-sensitively"),
    ('<aspectTerm term="food" from="4" to="8"/>', "polarity"),
    ('<aspectTerm polarity="positive" from="4" to="8"/>', "term"),
    ('<aspectTerm term="food" polarity="positive" from="four" to="8"/>', "'four'"),
    ('<aspectTerm term="food" polarity="positive" from="4" to="80"/>', "to=80"),
    ('<aspectTerm term="food" polarity="positive" from="-14" to="-10"/>', "from=-14"),
    ('<aspectTerm term="food" polarity="positive" from="4" to="8" implicit_sentiment="maybe"/>', "'maybe'"),
    ('<aspectTerm term=" " polarity="positive" from="3" to="4"/>', "whitespace"),
])  # fmt: skip
def test_bad_annotation_names_file_sentence_and_value(tmp_path: Path, term_xml: str, offending: str) -> None:
    text = "The food was great"
    path = write_xml(tmp_path, semeval_sentence("s1", text, GOOD) + semeval_sentence("s-42", text, term_xml))
    with pytest.raises(DataFormatError) as error:
        read_absa_xml(path)
    message = str(error.value)
    assert str(path) in message and "'s-42'" in message and offending in message


def test_malformed_xml_names_file_and_position(tmp_path: Path) -> None:
    path = write_xml(tmp_path, '<sentence id="s1"><text>The food</text><aspectTerms>')
    expected = r"malformed XML at line 4, column 2 \(in or after sentence 's1'\)"
    with pytest.raises(DataFormatError, match=expected) as error:
        read_absa_xml(path)
    assert str(path) in str(error.value)


def test_non_absa_xml_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.xml"
    path.write_text("<reviews><review/></reviews>")
    with pytest.raises(DataFormatError, match="no <sentence> elements under <reviews>"):
        read_absa_xml(path)


def test_missing_text_element(tmp_path: Path) -> None:
    path = write_xml(tmp_path, '<sentence id="s7"><aspectTerms>' + GOOD + "</aspectTerms></sentence>")
    with pytest.raises(DataFormatError, match="sentence 's7' has no <text> element"):
        read_absa_xml(path)


def test_ids_on_some_sentences_only_or_repeated(tmp_path: Path) -> None:
    mixed = write_xml(tmp_path, semeval_sentence("s1", "Hi.") + "<sentence><text>Hi.</text></sentence>", "mixed.xml")
    with pytest.raises(DataFormatError, match="sentence 1 .* has no 'id' attribute"):
        read_absa_xml(mixed)
    repeated = write_xml(tmp_path, semeval_sentence("s1", "Hi.") + semeval_sentence("s1", "Ho."), "repeated.xml")
    with pytest.raises(DataFormatError, match="sentence id 's1' occurs more than once"):
        read_absa_xml(repeated)


def test_partially_labelled_implicitness_is_rejected(tmp_path: Path) -> None:
    labelled = '<aspectTerm term="food" polarity="positive" from="4" to="8" implicit_sentiment="False"/>'
    unlabelled_conflict = '<aspectTerm term="food" polarity="conflict" from="4" to="8"/>'
    body = semeval_sentence("a", "The food", labelled) + semeval_sentence("b", "The food", unlabelled_conflict)
    path = write_xml(tmp_path, body)
    assert [i.implicit for i in read_absa_xml(path, keep_conflict=True)] == [False, None]  # conflict may lack it
    path = write_xml(tmp_path, semeval_sentence("a", "The food", labelled) + semeval_sentence("b", "The food", GOOD))
    with pytest.raises(DataFormatError, match="sentence 'b', term 'food': missing attribute implicit_sentiment"):
        read_absa_xml(path)


def test_whitespace_at_term_edges_is_trimmed(tmp_path: Path) -> None:
    term = '<aspectTerm term=" food\u00a0" polarity="neutral" from="3" to="9" opinion_words="  so  so "/>'
    path = write_xml(tmp_path, semeval_sentence("s1", "The food\u00a0was ok", term))
    (instance,) = read_absa_xml(path)
    assert (instance.term, instance.start, instance.end, instance.opinion_words) == ("food", 4, 8, ("so", "so"))


def test_mams_style_file_gets_stem_index_ids(tmp_path: Path) -> None:
    body = "<sentence><text>Hi.</text></sentence>" + semeval_sentence("", "The food", GOOD).replace(' id=""', "")
    (instance,) = read_absa_xml(write_xml(tmp_path, body, "dev.xml"))
    assert instance.sentence_id == "dev:1"


# ---------------------------------------------------------------------------------------------------
# The dev split
# ---------------------------------------------------------------------------------------------------


def synthetic(n: int = 500) -> list[AspectInstance]:
    """Instances with uneven strata; the sentence id is the position."""
    instances = []
    for index in range(n):
        polarity = POLARITIES[(index * 7) % 5 % 3]
        implicit = None if index % 11 == 0 else index % 3 == 0
        instances.append(AspectInstance(str(index), "t", "t", 0, 1, polarity, implicit, ()))
    return instances


def ids(instances: list[AspectInstance]) -> list[str]:
    return [instance.sentence_id for instance in instances]


def test_split_is_deterministic_and_seed_dependent() -> None:
    instances = synthetic()
    assert stratified_split(instances, 0.1, seed=13) == stratified_split(instances, 0.1, seed=13)
    assert ids(stratified_split(instances, 0.1, seed=13)[1]) != ids(stratified_split(instances, 0.1, seed=14)[1])


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.0])
def test_split_is_stratified_disjoint_complete_and_ordered(fraction: float) -> None:
    instances = synthetic()
    rest, held_out = stratified_split(instances, fraction, seed=3)
    assert sorted(ids(rest) + ids(held_out), key=int) == ids(instances)  # each instance exactly once
    assert ids(rest) == sorted(ids(rest), key=int) and ids(held_out) == sorted(ids(held_out), key=int)
    assert len(held_out) == round(fraction * len(instances) + 1e-9)
    totals, chosen = Counter(map(stratum, instances)), Counter(map(stratum, held_out))
    assert len(totals) == 9
    for key, total in totals.items():
        assert abs(chosen[key] - fraction * total) < 1, key


def test_split_rejects_bad_fraction() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\), got 1.0"):
        stratified_split(synthetic(), 1.0, seed=0)


def test_split_ignores_python_hash_seed() -> None:
    code = (
        "from scpt.data.absa import AspectInstance, stratified_split\n"
        "polarity = ('positive', 'negative')\n"
        "xs = [AspectInstance(str(i), 't', 't', 0, 1, polarity[i % 2], bool(i % 3), ()) for i in range(200)]\n"
        "print([x.sentence_id for x in stratified_split(xs, 0.2, 5)[1]])\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True, text=True, check=True,
        ).stdout
        for hash_seed in ("1", "2")
    }  # fmt: skip
    assert len(outputs) == 1


# ---------------------------------------------------------------------------------------------------
# Registry, data directory, load_splits
# ---------------------------------------------------------------------------------------------------


def test_registry_describes_the_files() -> None:
    assert list(DATASETS) == ["restaurants", "laptops", "mams"]
    assert dict(DATASETS["restaurants"].files) == {
        "train": "restaurants/Restaurants_Train_v2_Implicit_Labeled.xml",
        "test": "restaurants/Restaurants_Test_Gold_Implicit_Labeled.xml",
    }
    assert DATASETS["laptops"].dev_file is None and DATASETS["laptops"].implicit_labels
    assert dict(DATASETS["mams"].files) == {"train": "mams/train.xml", "val": "mams/val.xml", "test": "mams/test.xml"}
    assert DATASETS["mams"].dev_file == "val" and not DATASETS["mams"].implicit_labels


def test_resolve_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCPT_DATA_DIR", str(tmp_path / "from-env"))
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"
    assert resolve_data_dir(None) == tmp_path / "from-env"
    monkeypatch.delenv("SCPT_DATA_DIR")
    assert resolve_data_dir(tmp_path) == tmp_path
    with pytest.raises(DataDirError, match="SCPT_DATA_DIR") as error:
        resolve_data_dir(None)
    assert "--data-dir" in str(error.value) and "scpt data download" in str(error.value)


def test_unknown_dataset_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'twitter'; known datasets: restaurants, laptops, mams"):
        load_splits("twitter")


@needs_data
def test_missing_files_are_all_listed(tmp_path: Path) -> None:
    (tmp_path / "mams").mkdir()
    (tmp_path / "mams" / "val.xml").write_bytes((DATA_DIR / "mams" / "val.xml").read_bytes())
    with pytest.raises(FileNotFoundError) as error:
        load_splits("mams", data_dir=tmp_path)
    message = str(error.value)
    assert "2 of 3 files missing" in message
    assert f"MISSING  {tmp_path / 'mams' / 'train.xml'}" in message
    assert f"MISSING  {tmp_path / 'mams' / 'test.xml'}" in message
    assert f"found    {tmp_path / 'mams' / 'val.xml'}" in message
    assert f"scpt data download --data-dir {tmp_path} --datasets mams" in message


@needs_data
def test_data_dir_argument_beats_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCPT_DATA_DIR", str(tmp_path))
    assert len(load_splits("laptops", data_dir=DATA_DIR)["test"]) == 638
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_splits("laptops")


@needs_data
@pytest.mark.parametrize("dataset", ["restaurants", "laptops"])
def test_semeval_dev_is_carved_from_train(dataset: str) -> None:
    spec = DATASETS[dataset]
    released_train = list(read_real(spec.files["train"]))
    splits = load_splits(dataset, dev_fraction=0.1, seed=13)
    assert set(splits) == {"train", "dev", "test"}
    assert list(splits["test"]) == list(read_real(spec.files["test"]))
    assert (splits["train"], splits["dev"]) == stratified_split(released_train, 0.1, 13)
    assert len(splits["dev"]) == round(0.1 * len(released_train))
    combined = Counter(splits["train"]) + Counter(splits["dev"])
    assert combined == Counter(released_train)


@needs_data
def test_mams_dev_is_val() -> None:
    splits = load_splits("mams", seed=99, dev_fraction=0.5)  # both unused for MAMS
    assert [len(splits[name]) for name in ("train", "dev", "test")] == [11186, 1332, 1336]
    assert splits["dev"][0].sentence_id == "val:0"


# ---------------------------------------------------------------------------------------------------
# scpt data stats
# ---------------------------------------------------------------------------------------------------


def column_edges(line: str) -> list[int]:
    """Start of the two text columns, end of the number columns."""
    cells = list(re.finditer(r"\S+", line))
    return [cell.start() for cell in cells[:2]] + [cell.end() for cell in cells[2:]]


@needs_data
def test_stats_command_prints_known_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["data", "stats", "--data-dir", str(DATA_DIR)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["dataset", "split", "total", "positive", "negative", "neutral", "implicit", "explicit"]
    assert column_edges(lines[0]) == column_edges(lines[1]) == column_edges(lines[-1])  # aligned
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in lines[1:]}
    assert rows[("restaurants", "test")] == ["1120", "728", "196", "196", "267", "853"]
    assert rows[("laptops", "test")] == ["638", "341", "128", "169", "175", "463"]
    assert rows[("mams", "train")] == ["11186", "3380", "2764", "5042", "n/a", "n/a"]
    assert rows[("mams", "dev")][0] == "1332" and rows[("mams", "test")][0] == "1336"
    known_train = {"restaurants": [3602, 2164, 805, 633, 1030, 2572], "laptops": [2313, 987, 866, 460, 716, 1597]}
    for dataset, total in known_train.items():
        train, dev = (list(map(int, rows[(dataset, split)])) for split in ("train", "dev"))
        assert [a + b for a, b in zip(train, dev)] == total
        assert dev[0] == round(0.1 * total[0])


@needs_data
def test_stats_command_options(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["data", "stats", "--datasets", "laptops", "--dev-fraction", "0.2", "--seed", "1"]
    assert cli.main(argv) == 0
    rows = {line.split()[1]: line.split()[2] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows == {"train": "1850", "dev": "463", "test": "638"}


def test_stats_command_reports_missing_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["data", "stats", "--data-dir", str(tmp_path), "--datasets", "mams"]) == 2
    err = capsys.readouterr().err
    assert "scpt data stats: error: dataset 'mams': 3 of 3 files missing" in err
    assert "scpt data download" in err
