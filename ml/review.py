"""Likely-mislabelled spans: labelled spans that a model trained without them contradicts with high confidence.

The labelled tasks are split into ``k`` folds; each fold is checked by a spaCy CNN trained on the other folds only
(``ml.training.spacy_cnn``, a small step budget), so no model judges a label it learnt from. This is the
cross-validated disagreement of confident learning (Northcutt et al. 2021, "Confident Learning: Estimating
Uncertainty in Dataset Labels"; Wang & Mueller 2022 for entity recognition), on spans instead of tokens: where the
held-out model's spans and the annotator's disagree, the kind of disagreement says what may be wrong, and the
model's confidence ranks the suspects.

Kinds, in nervaluate's terms as :mod:`ml.evaluation` uses them, with the annotator's labels as the reference and the
held-out model as the response (what each says about the *labels* is in brackets):

- ``spurious``: the model finds an entity where the annotator labelled nothing that overlaps it (perhaps a span the
  annotator left out); confidence: the model's score of its span.
- ``missed``: the annotator labelled a span no predicted entity overlaps (perhaps a span that should not be
  labelled); confidence: 1 minus the beam probability
  that the model gives any entity at exactly that span, times the fold model's recall on the fold's labels (a model
  that finds 95% of the labelled spans is good evidence when it finds nothing somewhere; one that finds half of
  them is not: without the factor, a weak model's misses would fill the top of the ranking).
- ``wrong_type``: the model has the annotator's exact span with another type; confidence: its score.
- ``wrong_boundary``: the model's entity overlaps the annotator's span but starts or ends elsewhere (its type may
  differ too); confidence: its score (the highest of the overlapping ones).

Confidences are the fold model's raw beam probabilities (``ml.models.spacy_ner``): they rank well but are not
calibrated (a fold model has no dev split of its own to fit a calibration on).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from spacy.tokens import Doc

from ml.converters import CharSpan, char_spans, to_docbin
from ml.errors import TrainingError
from ml.prediction import ScoredSpan, doc_copy
from ml.promotion import stable_unit
from ml.review_settings import ReviewSettings
from ml.training.progress import ignore_progress
from ml.training.settings import TrainSettings

log = logging.getLogger(__name__)

Kind = Literal["missed", "spurious", "wrong_type", "wrong_boundary"]
KINDS: tuple[Kind, ...] = ("missed", "spurious", "wrong_type", "wrong_boundary")
# a fold model selects its checkpoint on at most this many of its own training docs (spaCy's loop needs a dev set;
# the checked fold must not choose the model that judges it)
SELECTION_DOCS = 200


@dataclass(frozen=True)
class Suspect:
    """A labelled span (or a missing one) that the held-out model contradicts.

    ``start``/``end``/``label``: the annotator's span (None for ``spurious``); ``predicted_*``: the model's (None for
    ``missed``); ``text``: the annotator's span's text, or the model's for ``spurious``; ``confidence`` in [0, 1];
    ``fold``: the fold whose model checked it.
    """

    task_id: int
    kind: Kind
    confidence: float
    start: int | None
    end: int | None
    label: str | None
    predicted_start: int | None
    predicted_end: int | None
    predicted_label: str | None
    text: str
    fold: int = 0

    @property
    def entity_type(self) -> str:
        """The type the suspect counts under: the annotator's, or the model's for a ``spurious`` span."""
        return self.label or self.predicted_label or ""


def fold_of(task_id: int, *, folds: int, key: str = "") -> int:
    """The fold of a task, from a hash of ``key`` and its id (``ml.promotion.stable_unit``).

    A task keeps its fold from one pass to the next, so its verdict does not change with a reshuffle.
    """
    return min(folds - 1, int(stable_unit(f"{key}:review:{task_id}") * folds))


def _overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


def contradictions(
    task_id: int,
    text: str,
    gold: Sequence[CharSpan],
    predicted: Sequence[ScoredSpan],
    *,
    span_mass: Mapping[tuple[int, int], float] | None = None,
    recall: float = 1.0,
    fold: int = 0,
) -> list[Suspect]:
    """Every disagreement between a task's labels and a held-out model's prediction, with its kind and confidence.

    Args:
        task_id: The task.
        text: Its text.
        gold: The annotator's spans (non-overlapping).
        predicted: The model's spans with their probabilities (non-overlapping).
        span_mass: ``(start, end)`` -> the model's probability of any entity at exactly that span (a ``missed``
            span's confidence is 1 minus it; a span absent counts 0, so an unknown mass makes it certain).
        recall: The fold model's exact-match recall on the fold's labels, in [0, 1]; a ``missed`` span's confidence
            is multiplied by it, so a weak model's misses rank low.
        fold: The fold the model was trained without.

    Returns:
        The suspects, in text order (unranked; agreements give none).
    """
    mass = span_mass or {}
    found: list[Suspect] = []
    for g in gold:
        over = [p for p in predicted if _overlaps(g.start, g.end, p.start, p.end)]
        exact = [p for p in over if (p.start, p.end) == (g.start, g.end)]
        if exact and exact[0].label == g.label:
            continue
        kind: Kind
        if exact:
            p, kind = exact[0], "wrong_type"
        elif over:
            p, kind = max(over, key=lambda s: s.score), "wrong_boundary"
        else:
            confidence = (1.0 - min(1.0, mass.get((g.start, g.end), 0.0))) * recall
            found.append(
                Suspect(
                    task_id,
                    "missed",
                    confidence,
                    g.start,
                    g.end,
                    g.label,
                    None,
                    None,
                    None,
                    text[g.start : g.end],
                    fold,
                )
            )
            continue
        found.append(
            Suspect(
                task_id, kind, p.score, g.start, g.end, g.label, p.start, p.end, p.label, text[g.start : g.end], fold
            )
        )
    for p in predicted:
        if not any(_overlaps(g.start, g.end, p.start, p.end) for g in gold):
            found.append(Suspect(task_id, "spurious", p.score, None, None, None, p.start, p.end, p.label, p.text, fold))
    return sorted(found, key=lambda s: (s.start if s.start is not None else s.predicted_start or 0, s.kind))


def rank(suspects: Sequence[Suspect], *, min_confidence: float = 0.0, limit: int | None = None) -> list[Suspect]:
    """Suspects at or above ``min_confidence``, most confident first; the first ``limit`` when given.

    Ties are ordered by task, then place in the text.
    """
    kept = [s for s in suspects if s.confidence >= min_confidence]
    kept.sort(key=lambda s: (-s.confidence, s.task_id, s.start if s.start is not None else s.predicted_start or 0))
    return kept[:limit] if limit is not None else kept


def corrected(gold: Sequence[CharSpan], suspects: Sequence[Suspect]) -> list[CharSpan]:
    """The labels with each suspect's model reading applied: what a reviewer is shown beside the annotation.

    A ``spurious`` span is added, a type or boundary replaced. A ``missed`` span (the model finds nothing there) stays,
    so the reviewer sees the span the note is about and decides whether to remove it. Overlapping results keep the
    first.
    """
    spans = {(g.start, g.end): g for g in gold}
    for s in suspects:
        if s.kind == "missed":
            continue
        if s.start is not None and s.end is not None:
            spans.pop((s.start, s.end), None)
        if s.predicted_start is not None and s.predicted_end is not None and s.predicted_label is not None:
            spans[(s.predicted_start, s.predicted_end)] = CharSpan(
                s.predicted_start, s.predicted_end, s.predicted_label
            )
    out: list[CharSpan] = []
    for span in sorted(spans.values()):
        if not out or span.start >= out[-1].end:
            out.append(span)
    return out


@dataclass(frozen=True)
class ReviewResult:
    """A cross-validated pass: the ranked suspects, what was checked, how long the folds took."""

    suspects: list[Suspect]
    docs: int
    folds: int
    seconds: float
    counts_by_kind: dict[str, int] = field(default_factory=dict)
    counts_by_type: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _gold_mass(model: Any, docs: Sequence[Doc]) -> list[dict[tuple[int, int], float]]:
    """Per doc, the beam probability of an entity (any type) at each span (spaCy's ``scored_ents``)."""
    nlp = model.nlp
    fresh = [doc_copy(doc, nlp.vocab) for doc in docs]
    if [name for name in nlp.pipe_names if name != "ner"]:
        fresh = list(nlp.pipe(fresh, disable=["ner"]))
    ner = nlp.get_pipe("ner")
    beams = ner.beam_parse(fresh, beam_width=model.beam_width, beam_density=0.0001)
    out: list[dict[tuple[int, int], float]] = []
    for doc, scores in zip(fresh, ner.scored_ents(beams), strict=True):
        mass: dict[tuple[int, int], float] = defaultdict(float)
        for (first, last, _label), probability in scores.items():
            span = doc[first:last]
            mass[(span.start_char, span.end_char)] += float(probability)
        out.append(dict(mass))
    return out


def _fold_model(train_docs: Sequence[Doc], settings: TrainSettings, work: Path) -> Any:
    from ml.models.spacy_ner import SpacyNER
    from ml.training.spacy_cnn import train_cnn

    work.mkdir(parents=True, exist_ok=True)
    step = max(1, len(train_docs) // SELECTION_DOCS)
    to_docbin(train_docs, work / "train.spacy")
    to_docbin(list(train_docs)[::step][:SELECTION_DOCS], work / "select.spacy")
    best = train_cnn(
        settings,
        train_path=work / "train.spacy",
        dev_path=work / "select.spacy",
        output_dir=work / "out",
        on_progress=ignore_progress,
    )
    return SpacyNER.load(best, version=work.name, beam_width=settings.beam_width)


def cross_validate(
    docs: Sequence[Doc],
    task_ids: Sequence[int],
    *,
    settings: ReviewSettings,
    work_dir: str | Path,
    key: str = "",
    on_fold: Callable[[int, int], None] = lambda done, total: None,
) -> ReviewResult:
    """Check every labelled doc with a CNN trained on the other folds; return the ranked suspects.

    Args:
        docs: Labelled docs (gold ``ents``), tokenised as for training.
        task_ids: The task of each doc (the fold split hashes it with ``key``).
        settings: Folds, step budget, confidence floor, how many suspects to keep.
        work_dir: Scratch space for the fold models (removed by the caller).
        key: Hashed with each task id for the fold split (the project).
        on_fold: Called with (folds done, folds) after each fold.

    Returns:
        The ranked suspects (at most ``settings.max_suspects``, each at or above ``settings.min_confidence``).

    Raises:
        TrainingError: fewer than ``settings.min_docs`` docs, or no entity to learn from.
    """
    if len(docs) != len(task_ids):
        raise ValueError("one task id per doc is needed")
    if len(docs) < settings.min_docs:
        raise TrainingError(f"{len(docs)} labelled tasks; a review pass needs at least {settings.min_docs}")
    clock = time.monotonic()
    fold_ids = [fold_of(t, folds=settings.folds, key=key) for t in task_ids]
    train_settings = TrainSettings(
        max_steps=settings.max_steps, eval_frequency=max(1, settings.max_steps // 3), seed=settings.seed
    )
    found: list[Suspect] = []
    for fold in range(settings.folds):
        checked = [i for i, f in enumerate(fold_ids) if f == fold]
        learn = [docs[i] for i, f in enumerate(fold_ids) if f != fold]
        if checked and any(d.ents for d in learn):
            model = _fold_model(learn, train_settings, Path(work_dir) / f"fold-{fold}")
            found += _check_fold(model, [docs[i] for i in checked], [task_ids[i] for i in checked], fold)
        on_fold(fold + 1, settings.folds)
    ranked = rank(found, min_confidence=settings.min_confidence, limit=settings.max_suspects)
    return ReviewResult(
        ranked,
        len(docs),
        settings.folds,
        round(time.monotonic() - clock, 1),
        dict(Counter(s.kind for s in ranked)),
        dict(Counter(s.entity_type for s in ranked)),
    )


def _check_fold(model: Any, docs: Sequence[Doc], task_ids: Sequence[int], fold: int) -> list[Suspect]:
    predicted = model.predict(docs)
    golds = [char_spans(doc) for doc in docs]
    # the beam mass only where a labelled span has no predicted entity over it (a ``missed`` span's confidence)
    lone = [
        i
        for i, (gold, pred) in enumerate(zip(golds, predicted, strict=True))
        if any(not any(_overlaps(g.start, g.end, p.start, p.end) for p in pred) for g in gold)
    ]
    masses: dict[int, dict[tuple[int, int], float]] = (
        dict(zip(lone, _gold_mass(model, [docs[i] for i in lone]), strict=True)) if lone else {}
    )
    labelled = sum(len(gold) for gold in golds)
    matched = sum(
        len({(g.start, g.end, g.label) for g in gold} & {(p.start, p.end, p.label) for p in pred})
        for gold, pred in zip(golds, predicted, strict=True)
    )
    recall = matched / labelled if labelled else 0.0
    found: list[Suspect] = []
    for i, doc in enumerate(docs):
        found += contradictions(
            task_ids[i], doc.text, golds[i], predicted[i], span_mass=masses.get(i), recall=recall, fold=fold
        )
    return found
