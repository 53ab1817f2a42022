"""Put character spans on a spaCy ``Doc`` under a policy, reporting every span that does not fit."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from spacy.tokens import Doc, Span

from ml.converters.issues import Action, ConversionIssue, IssueKind, Policy
from ml.errors import ConversionError

TASK_ID = "task_id"


@dataclass(frozen=True, order=True)
class CharSpan:
    """An entity as character offsets into a text (``end`` exclusive)."""

    start: int
    end: int
    label: str


@dataclass
class ConversionResult:
    """Docs with their entities set, plus every issue met on the way."""

    docs: list[Doc] = field(default_factory=list)
    issues: list[ConversionIssue] = field(default_factory=list)

    def extend(self, other: ConversionResult) -> None:
        """Append another result's docs and issues."""
        self.docs.extend(other.docs)
        self.issues.extend(other.issues)


def task_id_of(doc: Doc) -> str:
    """The id of the task (or file place) a doc came from, or ``'?'``."""
    return str(doc.user_data.get(TASK_ID, "?"))


def set_task_id(doc: Doc, task_id: str | int) -> None:
    """Remember where a doc came from (kept by DocBin and every exporter)."""
    doc.user_data[TASK_ID] = str(task_id)


def _align(doc: Doc, span: CharSpan, policy: Policy) -> tuple[Span | None, ConversionIssue | None]:
    tid = task_id_of(doc)
    text = doc.text[span.start : span.end]

    def issue(kind: IssueKind, action: Action, new: Span | None = None) -> ConversionIssue:
        return ConversionIssue(
            task_id=tid,
            kind=kind,
            action=action,
            start=span.start,
            end=span.end,
            label=span.label,
            text=text,
            new_start=new.start_char if new is not None else None,
            new_end=new.end_char if new is not None else None,
        )

    if not 0 <= span.start < span.end <= len(doc.text):
        return None, issue("out_of_range", "rejected" if policy == "strict" else "dropped")
    exact = doc.char_span(span.start, span.end, label=span.label, alignment_mode="strict")
    if exact is not None:
        return exact, None
    if policy == "strict":
        return None, issue("misaligned", "rejected")
    mode = "expand" if policy == "expand" else "contract"
    moved = doc.char_span(span.start, span.end, label=span.label, alignment_mode=mode)
    if moved is None or not moved.text.strip():
        return None, issue("misaligned", "dropped")
    return moved, issue("misaligned", "expanded" if policy == "expand" else "contracted", moved)


def _drop_overlaps(spans: list[Span], policy: Policy) -> tuple[list[Span], list[ConversionIssue]]:
    """Keep the first (then longest) of overlapping spans; report the others."""
    kept: list[Span] = []
    issues: list[ConversionIssue] = []
    for span in sorted(spans, key=lambda s: (s.start, -len(s), s.label_)):
        if kept and span.start < kept[-1].end:
            issues.append(
                ConversionIssue(
                    task_id=task_id_of(span.doc),
                    kind="overlap",
                    action="rejected" if policy == "strict" else "dropped",
                    start=span.start_char,
                    end=span.end_char,
                    label=span.label_,
                    text=span.text,
                )
            )
            continue
        kept.append(span)
    return kept, issues


def apply_spans(
    doc: Doc,
    spans: Iterable[CharSpan],
    *,
    labels: Collection[str],
    policy: Policy,
) -> list[ConversionIssue]:
    """Set ``doc.ents`` from character spans; tokens outside every span become ``O``.

    Args:
        doc: A tokenised doc with ``task_id`` in its user data.
        spans: Gold spans as character offsets.
        labels: The guide's label set; other labels are reported.
        policy: ``strict`` reports every misfit (the caller raises); ``expand`` / ``contract`` snap
            misaligned spans to token boundaries and report the change.

    Returns:
        The issues met (empty when every span fitted as given).
    """
    issues: list[ConversionIssue] = []
    placed: list[Span] = []
    for span in spans:
        if span.label not in labels:
            issues.append(
                ConversionIssue(
                    task_id=task_id_of(doc),
                    kind="unknown_label",
                    action="rejected" if policy == "strict" else "dropped",
                    start=span.start,
                    end=span.end,
                    label=span.label,
                    text=doc.text[span.start : span.end],
                )
            )
            continue
        aligned, issue = _align(doc, span, policy)
        if issue is not None:
            issues.append(issue)
        if aligned is not None:
            placed.append(aligned)
    kept, overlap_issues = _drop_overlaps(placed, policy)
    doc.set_ents(kept, default="outside")
    return issues + overlap_issues


def raise_if_strict(result: ConversionResult, policy: Policy) -> ConversionResult:
    """Under ``strict``, turn collected issues into one ``ConversionError``."""
    blocking = [i for i in result.issues if i.action == "rejected"]
    if policy == "strict" and blocking:
        raise ConversionError(blocking)
    return result


def char_spans(doc: Doc) -> list[CharSpan]:
    """The doc's entities as character spans."""
    return [CharSpan(e.start_char, e.end_char, e.label_) for e in doc.ents]
