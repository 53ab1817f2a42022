"""``/predict``: route each entity type to the fine-tuned model or the LLM, one result per task, in order."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.orm import Session

from backend.adapters.models import ModelRegistry
from backend.db.models import Project
from backend.services.errors import InvalidInputError
from backend.services.llm_annotation import LLMAnnotator
from backend.services.projects import current_model, guide_of
from backend.services.routing import routing_table
from ml.converters.label_studio import spans_to_results
from ml.llm import prompt_version
from ml.prediction import ScoredSpan
from ml.routing import RouteEntry, merge_routed, task_score

ModelOutput = tuple[str | None, list[list[ScoredSpan]]]


@dataclass(frozen=True)
class TaskInput:
    """A task to pre-annotate: Label Studio's id and its text."""

    task_id: int | None
    text: str


def version_tag(project: Project, routes: dict[str, RouteEntry], *, serving: str | None = None) -> str:
    """The ``model_version`` reported to Label Studio: the serving model plus a hash of routes and prompt.

    It changes exactly when what ``/predict`` would answer changes (new model, new routing, new guide).
    ``serving`` is the version that actually answered (while a promoted one still loads, the previous one).
    """
    version = serving or project.current_version
    guide = guide_of(project)
    basis = json.dumps(
        [version, prompt_version(guide), [asdict(r) for r in routes.values()]], sort_keys=True, default=str
    )
    return f"{version or 'llm-only'}+{hashlib.sha256(basis.encode()).hexdigest()[:8]}"


class Predictor:
    """Pre-annotates a batch of tasks with the project's routed sources."""

    def __init__(self, registry: ModelRegistry, llm: LLMAnnotator | None, *, max_text_chars: int) -> None:
        self.registry = registry
        self.llm = llm
        self.max_text_chars = max_text_chars

    def predict(
        self,
        db: Session,
        project: Project,
        tasks: Sequence[TaskInput],
        context: list[dict[str, Any]] | None = None,
        *,
        model_output: ModelOutput | None = None,
        use_llm: bool = True,
    ) -> tuple[str, list[dict[str, Any]]]:
        """One Label Studio prediction per task, in order, each with span scores and a task score.

        Args:
            db: The session.
            project: The project.
            tasks: The tasks.
            context: Regions the annotator drew (interactive pre-annotation), if any.
            model_output: The serving model's version and spans for these tasks, when already computed.
            use_llm: False leaves the types routed to the LLM empty (the ``llm`` queue adds them later).

        Returns:
            The model version tag and the predictions.
        """
        for task in tasks:
            if len(task.text) > self.max_text_chars:
                raise InvalidInputError(
                    f"task {task.task_id}: text has {len(task.text)} characters, "
                    f"more than the {self.max_text_chars} allowed (NER_MAX_TEXT_CHARS)"
                )
        routes = routing_table(db, project)
        texts = [t.text for t in tasks]
        serving, model_spans = model_output or self._model_spans(db, project, texts, routes)
        llm_spans = self._llm_spans(db, project, texts, routes) if use_llm else [[] for _ in texts]
        tag = version_tag(project, routes, serving=serving)
        guide = guide_of(project)
        names = guide.label_studio
        out = []
        for text, from_model, from_llm in zip(texts, model_spans, llm_spans, strict=True):
            spans = merge_routed(from_model, from_llm, routes)
            if context:
                spans = with_context(text, context, spans)
            result = spans_to_results(
                spans, from_name=names.from_name, to_name=names.to_name, label_values=names.labels
            )
            out.append({"result": result, "score": task_score(spans), "model_version": tag})
        return tag, out

    def _model_spans(
        self, db: Session, project: Project, texts: list[str], routes: dict[str, RouteEntry]
    ) -> ModelOutput:
        """The version that answered (None: the promoted one, not needed or not loadable) and its spans."""
        if not any(r.route == "model" for r in routes.values()):
            return None, [[] for _ in texts]
        row = current_model(db, project)
        model = self.registry.get(project.id, version=project.current_version, path=row.path if row else None)
        if model is None:
            return None, [[] for _ in texts]
        return model.version, model.predict([model.make_doc(text) for text in texts])

    def _llm_spans(
        self, db: Session, project: Project, texts: list[str], routes: dict[str, RouteEntry]
    ) -> list[list[ScoredSpan]]:
        if self.llm is None or not any(r.route == "llm" for r in routes.values()):
            return [[] for _ in texts]
        return [a.spans for a in self.llm.annotate(db, project, texts)]


def with_context(text: str, context: list[dict[str, Any]], predicted: list[ScoredSpan]) -> list[ScoredSpan]:
    """Interactive pre-annotation: keep the drawn regions, label every other occurrence of their text the same
    way (score 1.0), then add the predictions that overlap none of these."""
    drawn: list[ScoredSpan] = []
    for region in context:
        value = region.get("value") or {}
        start, end, labels = value.get("start"), value.get("end"), value.get("labels") or []
        if isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text) and labels:
            drawn.append(ScoredSpan(start, end, str(labels[0]), text[start:end], 1.0))
    suggested = list(drawn)
    for span in drawn:
        for match in re.finditer(rf"(?<!\w){re.escape(span.text)}(?!\w)", text):
            candidate = ScoredSpan(match.start(), match.end(), span.label, span.text, 1.0)
            if _free(candidate, suggested):
                suggested.append(candidate)
    suggested += [p for p in predicted if _free(p, suggested)]
    return sorted(suggested, key=lambda s: s.start)


def _free(span: ScoredSpan, taken: Sequence[ScoredSpan]) -> bool:
    return all(span.end <= t.start or t.end <= span.start for t in taken)
