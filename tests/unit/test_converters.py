"""Property tests for the converters (STYLE.md section 7).

Every assertion is on what a converter *produced*: the doc's text and entities, the issues it
reported, or the text it wrote. Expected values are computed independently of the converter
(from token positions or from the spans the strategy chose), never by feeding the input back in.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import spacy
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc

from ml.converters import (
    CharSpan,
    ConversionIssue,
    from_conll,
    from_label_studio,
    load_docs,
    task_id_of,
    to_conll,
    to_label_studio,
    to_results,
    write_docs,
)
from ml.converters.label_studio import results_to_spans, spans_to_results
from ml.errors import ConversionError
from ml.prediction import ScoredSpan

LABELS = ("PER", "ORG", "LOC", "WORK-OF-ART")
UNKNOWN = "BOGUS"
NLP = spacy.blank("en")

# Modest example counts: the whole file must stay well under 20 s on a busy 2-core machine.
# tmp_path is shared by the examples of one test; each example overwrites its files before reading.
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# --------------------------------------------------------------------------------------------
# Helpers and strategies
# --------------------------------------------------------------------------------------------

WORD_CHARS = string.ascii_letters + string.digits + "éßЖ" + "-.,"


def words(alphabet: str = WORD_CHARS) -> st.SearchStrategy[str]:
    """A word without whitespace; spaCy may still split it ("a-b", "x.", "3,5")."""
    return st.text(alphabet=alphabet, min_size=1, max_size=8)


labels = st.sampled_from(LABELS)


@st.composite
def annotated_text(draw: st.DrawFn, alphabet: str = WORD_CHARS) -> tuple[str, list[CharSpan]]:
    """Random words joined by single spaces, and non-overlapping spans on runs of spaCy tokens.

    The spans are chosen on the tokens of ``NLP.make_doc(text)`` so they are token-aligned by
    construction; adjacent entities (``B-x B-x``) can occur.
    """
    text = " ".join(draw(st.lists(words(alphabet), min_size=1, max_size=10)))
    doc = NLP.make_doc(text)
    spans: list[CharSpan] = []
    index = 0
    while index < len(doc):
        length = draw(st.integers(1, min(3, len(doc) - index)))
        label = draw(st.one_of(st.none(), labels))
        if label is not None:
            run = doc[index : index + length]
            spans.append(CharSpan(run.start_char, run.end_char, label))
        index += length
    return text, spans


def ls_task(task_id: int | str, text: str, spans: Sequence[CharSpan]) -> dict[str, Any]:
    """One task as Label Studio exports it, with a single annotation holding ``spans``."""
    result = [
        {
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": s.start, "end": s.end, "text": text[s.start : s.end], "labels": [s.label]},
        }
        for s in spans
    ]
    return {"id": task_id, "data": {"text": text}, "annotations": [{"result": result}]}


def entities(doc: Doc) -> list[CharSpan]:
    """The doc's entities as ``(start_char, end_char, label)``, read straight off spaCy."""
    return [CharSpan(e.start_char, e.end_char, e.label_) for e in doc.ents]


def overlaps(a: CharSpan, b: CharSpan) -> bool:
    return a.start < b.end and b.start < a.end


def convert_one(
    text: str, spans: Sequence[CharSpan], policy: str, task_id: int = 7
) -> tuple[Doc, list[ConversionIssue]]:
    """Run one Label Studio task through ``from_label_studio`` under ``policy``."""
    result = from_label_studio([ls_task(task_id, text, spans)], NLP, labels=LABELS, policy=policy)  # type: ignore[arg-type]
    assert len(result.docs) == 1
    return result.docs[0], result.issues


def strict_error(text: str, spans: Sequence[CharSpan], task_id: int = 7) -> ConversionError:
    with pytest.raises(ConversionError) as info:
        from_label_studio([ls_task(task_id, text, spans)], NLP, labels=LABELS, policy="strict")
    return info.value


def dropped(issues: Sequence[ConversionIssue]) -> list[ConversionIssue]:
    return [i for i in issues if i.action == "dropped"]


# --------------------------------------------------------------------------------------------
# 1. Label Studio: import, export, import again
# --------------------------------------------------------------------------------------------


@st.composite
def ls_tasks(draw: st.DrawFn) -> list[tuple[int, str, list[CharSpan]]]:
    """A few tasks with distinct ids; each task lists its spans in a random order."""
    cases = draw(st.lists(annotated_text(), min_size=1, max_size=3))
    ids = draw(st.lists(st.integers(0, 10**6), min_size=len(cases), max_size=len(cases), unique=True))
    return [(task_id, text, draw(st.permutations(spans))) for task_id, (text, spans) in zip(ids, cases, strict=True)]


@SETTINGS
@given(tasks=ls_tasks())
def test_label_studio_import_places_every_span_exactly(tasks: list[tuple[int, str, list[CharSpan]]]) -> None:
    result = from_label_studio([ls_task(*t) for t in tasks], NLP, labels=LABELS, policy="strict")

    assert result.issues == []
    assert [doc.text for doc in result.docs] == [text for _, text, _ in tasks]
    assert [task_id_of(doc) for doc in result.docs] == [str(task_id) for task_id, _, _ in tasks]
    assert [entities(doc) for doc in result.docs] == [sorted(spans) for _, _, spans in tasks]


@SETTINGS
@given(tasks=ls_tasks())
def test_label_studio_export_imports_back_to_the_same_spans(tasks: list[tuple[int, str, list[CharSpan]]]) -> None:
    docs = from_label_studio([ls_task(*t) for t in tasks], NLP, labels=LABELS, policy="strict").docs

    exported = to_label_studio(docs)
    again = from_label_studio(exported, NLP, labels=LABELS, policy="strict")

    assert again.issues == []
    assert [doc.text for doc in again.docs] == [text for _, text, _ in tasks]
    assert [entities(doc) for doc in again.docs] == [sorted(spans) for _, _, spans in tasks]
    assert [task["meta"]["source_id"] for task in exported] == [str(task_id) for task_id, _, _ in tasks]


@SETTINGS
@given(tasks=ls_tasks(), data=st.data())
def test_to_results_values_quote_the_text_they_point_at(
    tasks: list[tuple[int, str, list[CharSpan]]], data: st.DataObject
) -> None:
    docs = from_label_studio([ls_task(*t) for t in tasks], NLP, labels=LABELS, policy="strict").docs

    for doc, (task_id, text, spans) in zip(docs, tasks, strict=True):
        scores = data.draw(st.lists(st.floats(0, 1), min_size=len(spans), max_size=len(spans)))
        results = to_results(doc, scores)
        values = [r["value"] for r in results]
        assert [CharSpan(v["start"], v["end"], v["labels"][0]) for v in values] == sorted(spans)
        assert all(v["text"] == text[v["start"] : v["end"]] for v in values)
        assert all(len(v["labels"]) == 1 for v in values)
        assert [r["score"] for r in results] == scores
        assert all((r["from_name"], r["to_name"], r["type"]) == ("label", "text", "labels") for r in results)
        assert len({r["id"] for r in results}) == len(results)
        assert all(r["id"].startswith(f"{task_id}-") for r in results)


@SETTINGS
@given(tasks=ls_tasks(), data=st.data())
def test_results_to_spans_reads_back_scored_results(
    tasks: list[tuple[int, str, list[CharSpan]]], data: st.DataObject
) -> None:
    for _, text, spans in tasks:
        scores = data.draw(st.lists(st.floats(0, 1), min_size=len(spans), max_size=len(spans)))
        predicted = [
            ScoredSpan(s.start, s.end, s.label, text[s.start : s.end], score)
            for s, score in zip(sorted(spans), scores, strict=True)
        ]
        back = results_to_spans(spans_to_results(predicted))
        assert [(b.start, b.end, b.label, b.score) for b in back] == [
            (s.start, s.end, s.label, score) for s, score in zip(sorted(spans), scores, strict=True)
        ]
        assert all(b.text == text[b.start : b.end] for b in back)


# --------------------------------------------------------------------------------------------
# 2. CoNLL / BIO
# --------------------------------------------------------------------------------------------

# Any non-empty token without whitespace (every str.isspace() character is in a Z* or C* category).
# A line starting with "-DOCSTART-" is a document separator in the format, never a token.
conll_tokens = st.text(st.characters(exclude_categories=("Z", "C")), min_size=1, max_size=6).filter(
    lambda w: not w.startswith("-DOCSTART-")
)

Chunk = tuple[str | None, list[str]]  # (label or None for O, its tokens)


def bio_sentences() -> st.SearchStrategy[list[list[Chunk]]]:
    chunk = st.tuples(st.one_of(st.none(), labels), st.lists(conll_tokens, min_size=1, max_size=3))
    return st.lists(st.lists(chunk, min_size=1, max_size=5), min_size=1, max_size=4)


def bio_lines(sentence: list[Chunk]) -> list[str]:
    lines = []
    for label, tokens in sentence:
        for position, token in enumerate(tokens):
            tag = "O" if label is None else f"{'B' if position == 0 else 'I'}-{label}"
            lines.append(f"{token}\t{tag}")
    return lines


def expected_spans(sentence: list[Chunk]) -> list[CharSpan]:
    """Entity offsets over the single-space-joined tokens, computed from chunk widths."""
    spans, position = [], 0
    for label, tokens in sentence:
        width = sum(len(t) for t in tokens) + len(tokens) - 1
        if label is not None:
            spans.append(CharSpan(position, position + width, label))
        position += width + 1
    return spans


@SETTINGS
@given(sentences=bio_sentences())
def test_conll_offsets_follow_token_positions_and_write_back_exactly(
    tmp_path: Path, sentences: list[list[Chunk]]
) -> None:
    blocks = [bio_lines(sentence) for sentence in sentences]
    content = "\n\n".join("\n".join(block) for block in blocks) + "\n"
    path = tmp_path / "gold.conll"
    path.write_text(content, encoding="utf-8")

    result = from_conll(path, NLP.vocab, labels=LABELS, policy="strict")

    assert result.issues == []
    assert [doc.text for doc in result.docs] == [
        " ".join(token for _, tokens in sentence for token in tokens) for sentence in sentences
    ]
    assert [entities(doc) for doc in result.docs] == [expected_spans(sentence) for sentence in sentences]
    first_lines = [1 + sum(len(block) + 1 for block in blocks[:k]) for k in range(len(blocks))]
    assert [task_id_of(doc) for doc in result.docs] == [f"gold.conll:{line}" for line in first_lines]
    assert to_conll(result.docs) == content


@SETTINGS
@given(
    before=st.lists(conll_tokens, max_size=3),
    after_other_entity=st.booleans(),
    orphan=conll_tokens,
    inside=st.lists(conll_tokens, max_size=2),
    label=labels,
    tail=st.lists(conll_tokens, max_size=2),
)
def test_conll_orphan_inside_tag_starts_an_entity_and_is_reported(
    tmp_path: Path,
    before: list[str],
    after_other_entity: bool,
    orphan: str,
    inside: list[str],
    label: str,
    tail: list[str],
) -> None:
    other = next(x for x in LABELS if x != label)
    tagged = [(t, "O") for t in before]
    if after_other_entity:  # I-label right after B-other is an orphan too
        tagged.append(("prev", f"B-{other}"))
    orphan_index = len(tagged)
    tagged += [(orphan, f"I-{label}")] + [(t, f"I-{label}") for t in inside] + [(t, "O") for t in tail]
    path = tmp_path / "orphan.conll"
    path.write_text("".join(f"{t}\t{tag}\n" for t, tag in tagged), encoding="utf-8")

    result = from_conll(path, NLP.vocab, labels=LABELS, policy="strict")

    tokens = [t for t, _ in tagged]
    start = len(" ".join(tokens[:orphan_index])) + (1 if orphan_index else 0)
    end = start + len(" ".join([orphan, *inside]))
    (doc,) = result.docs
    assert doc.text == " ".join(tokens)
    assert CharSpan(start, end, label) in entities(doc)
    assert result.issues == [
        ConversionIssue(
            task_id="orphan.conll:1",
            kind="orphan_inside",
            action="started_entity",
            start=start,
            end=start + len(orphan),
            label=label,
            text=orphan,
        )
    ]


# --------------------------------------------------------------------------------------------
# 3. Misaligned spans (a boundary inside a word)
# --------------------------------------------------------------------------------------------


@st.composite
def misaligned_case(draw: st.DrawFn) -> tuple[str, list[CharSpan], list[CharSpan]]:
    """Text, spans with boundaries moved into their first/last token, and the token runs they came from.

    At least one span is misaligned; the runs are disjoint, so moved spans never overlap.
    """
    text, runs = draw(annotated_text())
    doc = NLP.make_doc(text)
    spans = []
    for run in runs:
        tokens = doc.char_span(run.start, run.end)
        assert tokens is not None
        first, last = len(tokens[0]), len(tokens[-1])
        cut_start = draw(st.integers(0, first - 1))
        cut_end = draw(st.integers(0, last - 1))
        if len(tokens) == 1 and cut_start + cut_end >= first:
            cut_start, cut_end = 0, 0
        spans.append(CharSpan(run.start + cut_start, run.end - cut_end, run.label))
    assume(spans != runs)
    return text, spans, runs


@SETTINGS
@given(case=misaligned_case())
def test_misaligned_span_is_rejected_under_strict(case: tuple[str, list[CharSpan], list[CharSpan]]) -> None:
    text, spans, runs = case

    error = strict_error(text, spans, task_id=42)

    moved = [s for s, r in zip(spans, runs, strict=True) if s != r]
    assert sorted((i.task_id, i.kind, i.action, CharSpan(i.start, i.end, i.label)) for i in error.issues) == sorted(
        ("42", "misaligned", "rejected", s) for s in moved
    )
    assert all(i.text == text[i.start : i.end] for i in error.issues)
    assert "task 42" in str(error)


@SETTINGS
@given(case=misaligned_case())
def test_misaligned_span_expands_to_its_tokens_and_is_reported(
    case: tuple[str, list[CharSpan], list[CharSpan]],
) -> None:
    text, spans, runs = case

    doc, issues = convert_one(text, spans, "expand", task_id=42)

    ents = entities(doc)
    assert ents == sorted(runs)  # each entity is the token run around its span
    for span in spans:
        assert any(e.start <= span.start and span.end <= e.end and e.label == span.label for e in ents)
    expected = [
        ConversionIssue(
            task_id="42",
            kind="misaligned",
            action="expanded",
            start=s.start,
            end=s.end,
            label=s.label,
            text=text[s.start : s.end],
            new_start=r.start,
            new_end=r.end,
        )
        for s, r in zip(spans, runs, strict=True)
        if s != r
    ]
    assert sorted(issues, key=str) == sorted(expected, key=str)
    assert len(ents) + len(dropped(issues)) == len(spans)


@SETTINGS
@given(case=misaligned_case())
def test_misaligned_span_contracts_inside_itself_or_is_dropped(
    case: tuple[str, list[CharSpan], list[CharSpan]],
) -> None:
    text, spans, runs = case

    doc, issues = convert_one(text, spans, "contract", task_id=42)

    ents = entities(doc)
    aligned = [s for s, r in zip(spans, runs, strict=True) if s == r]
    moved = [s for s, r in zip(spans, runs, strict=True) if s != r]
    assert set(aligned) <= set(ents)
    assert len(issues) == len(moved)
    for span, issue in zip(sorted(moved), sorted(issues, key=lambda i: i.start), strict=True):
        assert (issue.task_id, issue.kind, CharSpan(issue.start, issue.end, issue.label)) == ("42", "misaligned", span)
        inside = [e for e in ents if span.start <= e.start and e.end <= span.end and e not in aligned]
        if issue.action == "contracted":
            assert inside == [CharSpan(issue.new_start, issue.new_end, span.label)]  # type: ignore[arg-type]
            assert doc.text[issue.new_start : issue.new_end].strip()
        else:
            assert issue.action == "dropped"
            assert inside == []
    assert len(ents) + len(dropped(issues)) == len(spans)


@st.composite
def arbitrary_spans(draw: st.DrawFn) -> tuple[str, list[CharSpan]]:
    """Any spans at all: misaligned, overlapping, duplicated, empty, out of range, unknown label."""
    text = " ".join(draw(st.lists(words(), min_size=1, max_size=8)))

    @st.composite
    def span(draw: st.DrawFn) -> CharSpan:
        start = draw(st.integers(-1, len(text)))
        end = start + draw(st.integers(-1, 12))
        return CharSpan(start, end, draw(st.sampled_from((*LABELS, UNKNOWN))))

    return text, draw(st.lists(span(), min_size=1, max_size=6))


@SETTINGS
@given(case=arbitrary_spans(), policy=st.sampled_from(["expand", "contract"]))
def test_no_span_disappears_or_moves_silently(case: tuple[str, list[CharSpan]], policy: str) -> None:
    text, spans = case
    past = [s for s in spans if (s.start < 0 or s.end > len(text)) and s.label in LABELS]
    if past:  # an entity of the guide the text cannot hold: the task is left out, never taught as O (issues say why)
        result = from_label_studio([ls_task(7, text, spans)], NLP, labels=LABELS, policy=policy)  # type: ignore[arg-type]
        assert result.docs == []
        reported = [(i.start, i.end) for i in result.issues if i.kind == "out_of_range"]
        assert all((s.start, s.end) in reported for s in past)
        return

    doc, issues = convert_one(text, spans, policy)

    ents = entities(doc)
    assert len(ents) + len(dropped(issues)) == len(spans)
    assert not any(overlaps(a, b) for a, b in pairwise(ents))
    assert all(i.task_id == "7" for i in issues)
    assert all(i.action in ("expanded", "contracted", "dropped", "trimmed") for i in issues)
    for ent in ents:
        moves = [i for i in issues if (i.new_start, i.new_end, i.label) == (ent.start, ent.end, ent.label)]
        assert ent in spans or moves, f"{ent} is neither an input span nor a reported move"
        assert not text[ent.start].isspace()
        assert not text[ent.end - 1].isspace()
        for move in moves:
            original = text[move.start : move.end]
            core_start = move.start + len(original) - len(original.lstrip())
            core_end = move.end - (len(original) - len(original.rstrip()))
            if policy == "expand":  # covers the span, less any whitespace at its edges
                assert ent.start <= core_start
                assert core_end <= ent.end
            else:
                assert move.start <= ent.start
                assert ent.end <= move.end


@SETTINGS
@given(case=arbitrary_spans())
def test_strict_keeps_spans_as_given_or_raises(case: tuple[str, list[CharSpan]]) -> None:
    text, spans = case
    try:
        doc, issues = convert_one(text, spans, "strict")
    except ConversionError as error:
        rejected = error.issues
    else:
        assert issues == []
        assert entities(doc) == sorted(spans)
        return
    assert rejected
    assert all(i.action == "rejected" and i.task_id == "7" for i in rejected)
    assert {CharSpan(i.start, i.end, i.label) for i in rejected} <= set(spans)


# --------------------------------------------------------------------------------------------
# 4. Overlapping spans
# --------------------------------------------------------------------------------------------


@st.composite
def overlapping_case(draw: st.DrawFn) -> tuple[str, list[CharSpan]]:
    """Token-aligned spans (runs of spaCy tokens) of which at least two overlap."""
    text = " ".join(draw(st.lists(words(), min_size=1, max_size=8)))
    doc = NLP.make_doc(text)

    @st.composite
    def run(draw: st.DrawFn) -> CharSpan:
        start = draw(st.integers(0, len(doc) - 1))
        end = draw(st.integers(start + 1, min(len(doc), start + 4)))
        return CharSpan(doc[start].idx, doc[end - 1].idx + len(doc[end - 1]), draw(labels))

    spans = draw(st.lists(run(), min_size=2, max_size=5))
    assume(any(overlaps(a, b) for k, a in enumerate(spans) for b in spans[k + 1 :]))
    return text, spans


@SETTINGS
@given(case=overlapping_case())
def test_overlapping_spans_are_rejected_under_strict(case: tuple[str, list[CharSpan]]) -> None:
    text, spans = case

    error = strict_error(text, spans, task_id=9)

    assert error.issues
    assert all((i.task_id, i.kind, i.action) == ("9", "overlap", "rejected") for i in error.issues)
    assert {CharSpan(i.start, i.end, i.label) for i in error.issues} <= set(spans)


@SETTINGS
@given(case=overlapping_case())
def test_overlapping_spans_keep_first_then_longest_and_report_the_rest(case: tuple[str, list[CharSpan]]) -> None:
    text, spans = case

    doc, issues = convert_one(text, spans, "expand", task_id=9)

    ents = entities(doc)
    assert set(ents) <= set(spans)
    assert all(not overlaps(a, b) for k, a in enumerate(ents) for b in ents[k + 1 :])
    assert issues
    assert all((i.task_id, i.kind, i.action) == ("9", "overlap", "dropped") for i in issues)
    assert len(ents) + len(issues) == len(spans)
    for issue in issues:
        lost = CharSpan(issue.start, issue.end, issue.label)
        assert lost in spans
        assert issue.text == text[issue.start : issue.end]
        # the span that won starts earlier, or at the same place and is at least as long
        assert any(
            overlaps(kept, lost) and (kept.start, -(kept.end - kept.start)) <= (lost.start, -(lost.end - lost.start))
            for kept in ents
        )


# --------------------------------------------------------------------------------------------
# 5. Unknown labels
# --------------------------------------------------------------------------------------------


@st.composite
def case_with_unknown_label(draw: st.DrawFn) -> tuple[str, list[CharSpan], CharSpan]:
    text, spans = draw(annotated_text())
    doc = NLP.make_doc(text)
    index = draw(st.integers(0, len(doc) - 1))
    bogus = CharSpan(doc[index].idx, doc[index].idx + len(doc[index]), UNKNOWN)
    return text, draw(st.permutations([*spans, bogus])), bogus


@SETTINGS
@given(case=case_with_unknown_label())
def test_unknown_label_is_rejected_under_strict(case: tuple[str, list[CharSpan], CharSpan]) -> None:
    text, spans, bogus = case

    error = strict_error(text, spans, task_id=3)

    assert [(i.task_id, i.kind, i.action, CharSpan(i.start, i.end, i.label)) for i in error.issues] == [
        ("3", "unknown_label", "rejected", bogus)
    ]
    assert UNKNOWN in str(error)
    assert "task 3" in str(error)


@SETTINGS
@given(case=case_with_unknown_label(), policy=st.sampled_from(["expand", "contract"]))
def test_unknown_label_is_dropped_and_reported_otherwise(
    case: tuple[str, list[CharSpan], CharSpan], policy: str
) -> None:
    text, spans, bogus = case

    doc, issues = convert_one(text, spans, policy, task_id=3)

    assert entities(doc) == sorted(s for s in spans if s != bogus)
    assert [(i.task_id, i.kind, i.action, CharSpan(i.start, i.end, i.label), i.text) for i in issues] == [
        ("3", "unknown_label", "dropped", bogus, text[bogus.start : bogus.end])
    ]


# --------------------------------------------------------------------------------------------
# 6. File round trips through write_docs / load_docs
# --------------------------------------------------------------------------------------------


def make_docs(cases: Sequence[tuple[str, Sequence[CharSpan]]]) -> list[Doc]:
    """Gold docs built with spaCy alone (not through a converter), ids ``doc-<n>``."""
    docs = []
    for number, (text, spans) in enumerate(cases):
        doc = NLP.make_doc(text)
        ents = [doc.char_span(s.start, s.end, label=s.label) for s in spans]
        assert all(ent is not None for ent in ents)
        doc.set_ents([ent for ent in ents if ent is not None])
        doc.user_data["task_id"] = f"doc-{number}"
        docs.append(doc)
    return docs


@pytest.mark.parametrize("suffix", [".jsonl", ".spacy"])
@SETTINGS
@given(cases=st.lists(annotated_text(), min_size=1, max_size=3))
def test_jsonl_and_docbin_keep_texts_entities_and_task_ids(
    tmp_path: Path, suffix: str, cases: list[tuple[str, list[CharSpan]]]
) -> None:
    path = tmp_path / f"gold{suffix}"
    write_docs(make_docs(cases), path)

    result = load_docs(path, NLP, labels=LABELS, policy="strict")

    assert result.issues == []
    assert [doc.text for doc in result.docs] == [text for text, _ in cases]
    assert [entities(doc) for doc in result.docs] == [sorted(spans) for _, spans in cases]
    assert [task_id_of(doc) for doc in result.docs] == [f"doc-{n}" for n in range(len(cases))]


@pytest.mark.parametrize("suffix", [".json", ".tasks.jsonl"])
@SETTINGS
@given(cases=st.lists(annotated_text(), min_size=1, max_size=3))
def test_label_studio_files_keep_texts_and_entities(
    tmp_path: Path, suffix: str, cases: list[tuple[str, list[CharSpan]]]
) -> None:
    path = tmp_path / f"gold{suffix}"
    write_docs(make_docs(cases), path)

    result = load_docs(path, NLP, labels=LABELS, policy="strict")

    assert [doc.text for doc in result.docs] == [text for text, _ in cases]
    assert [entities(doc) for doc in result.docs] == [sorted(spans) for _, spans in cases]


LINE_BREAKING = "\u2028\u2029\x85"  # str.splitlines() breaks on these; JSON leaves them unescaped


@SETTINGS
@given(
    left=words(string.ascii_letters),
    separator=st.sampled_from(LINE_BREAKING),
    right=words(string.ascii_letters),
    label=labels,
)
@example(left="Ann", separator="\u2028", right="Lee", label="PER")
def test_jsonl_keeps_texts_with_unicode_line_separators(
    tmp_path: Path, left: str, separator: str, right: str, label: str
) -> None:
    text = f"{left}{separator} {right}"
    span = CharSpan(len(text) - len(right), len(text), label)
    path = tmp_path / "gold.jsonl"
    write_docs(make_docs([(text, [span])]), path)

    result = load_docs(path, NLP, labels=LABELS, policy="strict")

    assert [doc.text for doc in result.docs] == [text]
    assert [entities(doc) for doc in result.docs] == [[span]]
