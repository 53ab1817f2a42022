"""``/predict``: route each entity type to the fine-tuned model or the LLM, one result per task, in order."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.adapters.models import ModelRegistry
from backend.db.models import Project
from backend.db.session import session_scope
from backend.errors import InvalidInputError, ModelUnavailableError
from backend.services.label_state import convert_labels, index_labels
from backend.services.llm_annotation import LLMAnnotation, LLMAnnotator
from backend.services.projects import current_model, guide_of, project_by_id
from backend.services.routing import routing_table
from backend.services.watermark import labels_count
from ml.converters.label_studio import spans_to_results
from ml.llm import prompt_version
from ml.prediction import ScoredSpan
from ml.queue_order import predicted_queue_key
from ml.routing import RouteEntry, merge_routed

log = logging.getLogger(__name__)
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


@dataclass(frozen=True)
class Plan:
    """What a prediction needs from the database, read in one short session before any model or LLM runs."""

    project: Project
    tasks: list[TaskInput]
    routes: dict[str, RouteEntry]
    model_path: str | None
    watermark: int
    context: list[dict[str, Any]] | None

    @property
    def texts(self) -> list[str]:
        """The tasks' texts, in order."""
        return [task.text for task in self.tasks]

    def routed(self, route: str) -> bool:
        """Whether some entity type is routed to ``route`` (``model`` or ``llm``)."""
        return any(entry.route == route for entry in self.routes.values())


@dataclass(frozen=True)
class ModelPart:
    """The serving model's spans, the version that answered, and why it could not answer (None: it did)."""

    version: str | None
    spans: list[list[ScoredSpan]]
    missing: str | None = None


MISSING_LLM = "llm-missing"
PENDING_LLM = "llm-pending"  # missing now, and queued: the ``llm`` queue updates the prediction later
MISSING_MODEL = "model-missing"


class Predictor:
    """Pre-annotates a batch of tasks with the project's routed sources.

    A prediction runs in three steps so that no database connection is held while a model or the LLM works:
    ``plan`` (database reads, then the caller releases its session), the model part and the LLM part (started
    at once, waited for at most ``NER_LLM__PREDICT_WAIT_S``), and ``assemble``.
    """

    def __init__(self, registry: ModelRegistry, llm: LLMAnnotator | None, *, max_text_chars: int) -> None:
        self.registry = registry
        self.llm = llm
        self.max_text_chars = max_text_chars

    def close(self) -> None:
        """Stop the LLM's threads (before the database engine is disposed)."""
        if self.llm is not None:
            self.llm.close()

    def prepare_tokenizers(self, sessions: sessionmaker[Session]) -> None:
        """Parse every project's guide and build its tokenizer (spaCy's import included: seconds, once per process).

        The app calls it before it serves, so the first webhooks and ``/predict`` calls after a start do not wait
        for it past Label Studio's budgets (1 s for a webhook); :meth:`warm_up` does the slow rest in the background.
        """
        with session_scope(sessions) as db:
            for project in db.scalars(select(Project).order_by(Project.id)):
                try:
                    convert_labels(project, [])
                except Exception:  # that project's requests report it; the others are served
                    log.exception("project %s: its guide or tokenizer cannot be prepared", project.id)

    def warm_up(self, sessions: sessionmaker[Session], stop: threading.Event | None = None) -> None:
        """Prepare every project so that no request pays for it.

        Index the labels of projects that predate their materialisation, and build the demonstration index of projects
        with LLM-routed types. Slow on big projects (seconds per 10,000 labelled tasks): the app runs it in a background
        thread at start.
        """
        with session_scope(sessions) as db:
            project_ids = list(db.scalars(select(Project.id).order_by(Project.id)))
        for project_id in project_ids:
            if stop is not None and stop.is_set():
                return
            with session_scope(sessions) as db:
                project = project_by_id(db, project_id)
                convert_labels(project, [])  # makes the tokenizer the label events need, before the first one
                if not project.labels_indexed:
                    log.info("project %s: indexing its labels (once, after migration 0006)", project_id)
                    index_labels(db, project)
                    db.commit()
                llm = self.llm is not None and any(r.route == "llm" for r in routing_table(db, project).values())
                watermark = labels_count(db, project) if llm else None
            if self.llm is not None and watermark is not None:
                self.llm.demos.get(project_id, watermark)

    def plan(
        self, db: Session, project: Project, tasks: Sequence[TaskInput], context: list[dict[str, Any]] | None = None
    ) -> Plan:
        """Read what the prediction needs.

        Raises:
            InvalidInputError: a text is longer than ``NER_MAX_TEXT_CHARS``.
        """
        for task in tasks:
            if len(task.text) > self.max_text_chars:
                raise InvalidInputError(
                    f"task {task.task_id}: text has {len(task.text)} characters, "
                    f"more than the {self.max_text_chars} allowed (NER_MAX_TEXT_CHARS)"
                )
        routes = routing_table(db, project)
        row = current_model(db, project)
        llm = self.llm is not None and any(r.route == "llm" for r in routes.values())
        return Plan(
            project=project,
            tasks=list(tasks),
            routes=routes,
            model_path=row.path if row is not None else None,
            watermark=labels_count(db, project) if llm else 0,
            context=context,
        )

    def start_llm(self, plan: Plan, *, deadline: float | None = None) -> Future[list[LLMAnnotation]] | None:
        """Start the LLM part (None when no type is routed to it); see ``LLMAnnotator.start``."""
        if self.llm is None or not plan.routed("llm"):
            return None
        return self.llm.start(plan.project, plan.texts, watermark=plan.watermark, deadline=deadline)

    def model_part(self, plan: Plan) -> ModelPart:
        """The serving model's spans for the plan's texts (CPU only, no database)."""
        texts = plan.texts
        if not plan.routed("model"):
            return ModelPart(None, [[] for _ in texts])
        version = plan.project.current_version
        model = self.registry.get(plan.project.id, version=version, path=plan.model_path)
        if model is None:
            missing = None
            if version is not None:  # a version is promoted but cannot be loaded: say so, never answer empty
                missing = f"model version {version}: {self.registry.error(plan.project.id) or 'not loaded'}"
            return ModelPart(None, [[] for _ in texts], missing)
        return ModelPart(model.version, model.predict([model.make_doc(text) for text in texts]))

    def assemble(
        self, plan: Plan, model: ModelPart, llm: list[LLMAnnotation] | None, *, llm_pending: bool = False
    ) -> tuple[str, list[dict[str, Any]]]:
        """One Label Studio prediction per task, in order, each with span scores and a task score.

        ``llm`` None means the LLM part is missing (it did not answer within the wait): the model's types are
        answered and the tag says ``~llm-pending`` when ``llm_pending`` (the ``llm`` queue completes the
        prediction later, ``backend.services.preannotation``), else ``~llm-missing``. A model that cannot be
        loaded gives ``~model-missing``; when no type has a source left, ``ModelUnavailableError`` (503).
        """
        missing = []
        if model.missing is not None:
            if not plan.routed("llm"):
                raise ModelUnavailableError(
                    f"project {plan.project.id} cannot pre-annotate: {model.missing}; every type is routed to the "
                    f"model (route some to the LLM, or roll back: POST /api/projects/{plan.project.id}/rollback)"
                )
            missing.append(MISSING_MODEL)
        if llm is None and plan.routed("llm") and self.llm is not None:
            missing.append(PENDING_LLM if llm_pending else MISSING_LLM)
        tag = version_tag(plan.project, plan.routes, serving=model.version)
        if missing:
            tag += "~" + "~".join(missing)
        names = guide_of(plan.project).label_studio
        from_llm = [a.spans for a in llm] if llm is not None else [[] for _ in plan.tasks]
        out = []
        for text, from_model, llm_spans in zip(plan.texts, model.spans, from_llm, strict=True):
            spans = merge_routed(from_model, llm_spans, plan.routes)
            if plan.context:
                spans = with_context(text, plan.context, spans)
            result = spans_to_results(
                spans, from_name=names.from_name, to_name=names.to_name, label_values=names.labels
            )
            out.append({"result": result, "score": predicted_queue_key(spans), "model_version": tag})
        return tag, out

    def predict(
        self,
        db: Session,
        project: Project,
        tasks: Sequence[TaskInput],
        context: list[dict[str, Any]] | None = None,
        *,
        model_output: ModelOutput | None = None,
        use_llm: bool = True,
        llm_wait_s: float | None = None,
    ) -> tuple[str, list[dict[str, Any]]]:
        """Plan, run both parts and assemble, in this thread (the workers' path).

        ``/predict`` runs the same steps without holding a thread while it waits for the LLM.

        Args:
            db: The session; its transaction ends (``commit``) before the model and the LLM run.
            project: The project.
            tasks: The tasks.
            context: Regions the annotator drew (interactive pre-annotation), if any.
            model_output: The serving model's version and spans for these tasks, when already computed.
            use_llm: False leaves the types routed to the LLM empty (the ``llm`` queue adds them later).
            llm_wait_s: How long to wait for the LLM part (None: until it ends).

        Returns:
            The model version tag and the predictions.

        Raises:
            UpstreamError: the LLM failed (not merely slow).
        """
        plan = self.plan(db, project, tasks, context)
        db.commit()  # no connection is held while the model or the LLM works
        deadline = None if llm_wait_s is None else time.monotonic() + llm_wait_s
        job = self.start_llm(plan, deadline=deadline) if use_llm else None
        model = ModelPart(*model_output) if model_output is not None else self.model_part(plan)
        llm: list[LLMAnnotation] | None = None
        if job is not None:
            try:
                llm = job.result(timeout=llm_wait_s)
            except TimeoutError:
                llm = None
        elif not use_llm:
            llm = [LLMAnnotation([], 0, cached=False) for _ in plan.tasks]
        return self.assemble(plan, model, llm)


def with_context(text: str, context: list[dict[str, Any]], predicted: list[ScoredSpan]) -> list[ScoredSpan]:
    """Interactive pre-annotation.

    Keep the drawn regions, label every other occurrence of their text the same way (score 1.0), then add the
    predictions that overlap none of these.
    """
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
