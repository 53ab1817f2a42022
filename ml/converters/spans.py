"""Put character spans on a spaCy ``Doc`` under a policy, reporting every span that does not fit.

This is the one place every reader (Label Studio, JSONL, CoNLL, DocBin) sends its spans through, so each rule
holds for all of them: labels are mapped and checked, whitespace at span edges is trimmed (or refused), spans are
snapped to tokens (or refused), and overlaps are resolved; each change is reported as a ``ConversionIssue``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace

from spacy.tokens import Doc, Span

from ml.converters.issues import Action, ConversionIssue, IssueKind, Policy, RejectedSpansError, UnknownLabels

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


def _issue(
    doc: Doc, span: CharSpan, *, kind: IssueKind, action: Action, new: tuple[int, int] | None = None
) -> ConversionIssue:
    return ConversionIssue(
        task_id=task_id_of(doc),
        kind=kind,
        action=action,
        start=span.start,
        end=span.end,
        label=span.label,
        text=doc.text[span.start : span.end],
        new_start=new[0] if new is not None else None,
        new_end=new[1] if new is not None else None,
    )


def trim_whitespace(text: str, *, start: int, end: int) -> tuple[int, int]:
    """The offsets of ``text[start:end]`` without whitespace (any ``str.isspace`` character) at either edge.

    Args:
        text: The whole text.
        start: Start offset (inclusive).
        end: End offset (exclusive).

    Returns:
        The trimmed offsets; ``start == end`` when the span is only whitespace.
    """
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _trim(doc: Doc, span: CharSpan, *, policy: Policy) -> tuple[CharSpan | None, ConversionIssue | None]:
    """Trim whitespace at the span's edges (reported); ``None`` when it is only whitespace or under strict."""
    start, end = trim_whitespace(doc.text, start=span.start, end=span.end)
    if (start, end) == (span.start, span.end):
        return span, None
    if policy == "strict":
        return None, _issue(doc, span, kind="whitespace", action="rejected")
    if start == end:
        return None, _issue(doc, span, kind="whitespace", action="dropped")
    return CharSpan(start, end, span.label), _issue(doc, span, kind="whitespace", action="trimmed", new=(start, end))


def _strip_space_tokens(span: Span) -> Span | None:
    """The span without whitespace tokens at its edges (snapping to tokens can take them in); ``None`` if empty."""
    start, end = span.start, span.end
    while start < end and span.doc[start].is_space:
        start += 1
    while end > start and span.doc[end - 1].is_space:
        end -= 1
    return Span(span.doc, start, end, label=span.label_) if start < end else None


def _align(doc: Doc, span: CharSpan, policy: Policy) -> tuple[Span | None, list[ConversionIssue]]:
    if not 0 <= span.start < span.end <= len(doc.text):
        return None, [_issue(doc, span, kind="out_of_range", action="rejected" if policy == "strict" else "dropped")]
    trimmed, trim_issue = _trim(doc, span, policy=policy)
    issues = [trim_issue] if trim_issue is not None else []
    if trimmed is None:
        return None, issues
    exact = doc.char_span(trimmed.start, trimmed.end, label=trimmed.label, alignment_mode="strict")
    if exact is not None:
        return exact, issues
    if policy == "strict":
        return None, [*issues, _issue(doc, trimmed, kind="misaligned", action="rejected")]
    snapped = doc.char_span(trimmed.start, trimmed.end, label=trimmed.label, alignment_mode=policy)
    moved = _strip_space_tokens(snapped) if snapped is not None else None
    if moved is None:
        return None, [*issues, _issue(doc, trimmed, kind="misaligned", action="dropped")]
    action: Action = "expanded" if policy == "expand" else "contracted"
    return moved, [
        *issues,
        _issue(doc, trimmed, kind="misaligned", action=action, new=(moved.start_char, moved.end_char)),
    ]


def _drop_overlaps(spans: list[Span], policy: Policy) -> tuple[list[Span], list[ConversionIssue]]:
    """Keep the first (then longest) of overlapping spans; report the others.

    Not ``spacy.util.filter_spans``, which keeps the longest wherever it starts: the rule the README documents and
    ``nerloop convert`` has always applied is the first one.
    """
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


def _label_of(
    doc: Doc,
    span: CharSpan,
    *,
    labels: Collection[str],
    label_map: Mapping[str, str],
    refuse: bool,
) -> tuple[CharSpan | None, ConversionIssue | None]:
    """The span under its guide label (mapped when ``label_map`` says so), or the issue of an unknown label."""
    label = label_map.get(span.label, span.label)
    if label in labels:
        return replace(span, label=label), None
    issue = _issue(doc, span, kind="unknown_label", action="rejected" if refuse else "dropped")
    if label != span.label:
        issue = replace(issue, detail=f"mapped to {label!r}")
    return None, issue


def apply_spans(
    doc: Doc,
    spans: Iterable[CharSpan],
    *,
    labels: Collection[str],
    policy: Policy,
    label_map: Mapping[str, str] | None = None,
    unknown_labels: UnknownLabels | None = None,
) -> list[ConversionIssue]:
    """Set ``doc.ents`` from character spans; tokens outside every span become ``O``.

    Args:
        doc: A tokenised doc with ``task_id`` in its user data.
        spans: Gold spans as character offsets.
        labels: The guide's label set; other labels are reported.
        policy: ``strict`` reports every misfit as ``rejected`` (the caller raises); ``expand`` / ``contract``
            trim whitespace at span edges, snap misaligned spans to token boundaries and report each change.
        label_map: Labels of the data renamed to guide labels before the check (``{"PER": "person"}``).
        unknown_labels: ``refuse`` (reported as ``rejected``) or ``drop`` (reported as ``dropped``) a label that
            is not in the guide after mapping; ``None`` follows the policy (refuse under ``strict`` only).

    Returns:
        The issues met (empty when every span fitted as given).
    """
    refuse = unknown_labels == "refuse" or (unknown_labels is None and policy == "strict")
    issues: list[ConversionIssue] = []
    placed: list[Span] = []
    for given in spans:
        span, label_issue = _label_of(doc, given, labels=labels, label_map=label_map or {}, refuse=refuse)
        if span is None:
            issues.extend([label_issue] if label_issue is not None else [])
            continue
        aligned, align_issues = _align(doc, span, policy)
        issues.extend(align_issues)
        if aligned is not None:
            placed.append(aligned)
    kept, overlap_issues = _drop_overlaps(placed, policy)
    doc.set_ents(kept, default="outside")
    return issues + overlap_issues


def raise_if_strict(result: ConversionResult, policy: Policy) -> ConversionResult:
    """Raise one ``ConversionError`` listing every ``rejected`` issue, if there is any.

    Only ``strict`` rejects spans for where they lie, and only ``unknown_labels='refuse'`` rejects labels, so
    under ``expand`` / ``contract`` this raises only for refused labels.

    Args:
        result: The docs and issues of a conversion.
        policy: The conversion's policy (kept for the callers; the actions already reflect it).

    Returns:
        ``result`` itself when nothing was rejected.

    Raises:
        RejectedSpansError: (a ``ConversionError``) something was rejected; the message gives the remedy.
    """
    del policy
    blocking = [i for i in result.issues if i.action == "rejected"]
    if blocking:
        raise RejectedSpansError(blocking)
    return result


def char_spans(doc: Doc) -> list[CharSpan]:
    """The doc's entities as character spans."""
    return [CharSpan(e.start_char, e.end_char, e.label_) for e in doc.ents]
