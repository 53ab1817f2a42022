"""The backend's ports: the ``typing.Protocol`` at each real seam, and the values that cross it.

Services depend on these; ``backend.adapters`` implements them (the job queue on Celery and Redis, the LLM client
on the ``openai`` client, Label Studio on its SDK) and tests may pass their own. The NER model's port is
``ml.prediction.NERModel`` (``ml`` imports nothing of the backend).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

# ---- the job queue ----


class TaskName(StrEnum):
    """Names of the Celery tasks (defined in ``workers``; the backend sends them by name)."""

    RETRAIN_IF_DUE = "workers.retrain_if_due"
    START_TRAINING = "workers.start_training"
    TRAIN_RUN = "workers.train_run"
    SCORE_POOL = "workers.score_pool"
    LLM_PREANNOTATE = "workers.llm_preannotate"
    COMPARE_PROJECT = "workers.compare_project"
    REVIEW_LABELS = "workers.review_labels"


class JobQueue(Protocol):
    """Enqueue a task with ids as its only payload; return the job id (``backend.adapters.jobs.CeleryJobQueue``)."""

    def enqueue(self, name: TaskName, *ids: int) -> str:
        """Send one job."""
        ...

    def enqueue_once(self, name: TaskName, project_id: int, *ids: int) -> str | None:
        """Send ``name(project_id, *ids)`` unless one is pending for the project; return the job id, or None."""
        ...

    def started(self, name: TaskName, project_id: int) -> None:
        """A coalesced job began: the next trigger sends a new one."""
        ...

    def pending(self, name: TaskName, project_id: int) -> bool:
        """Whether a coalesced job of ``name`` is pending for the project."""
        ...


# ---- the LLM ----


@dataclass(frozen=True)
class Completion:
    """The text an LLM returned and what it cost in tokens and time.

    Attributes:
        content: The answer's text.
        prompt_tokens: Tokens of the whole prompt (the usage's ``prompt_tokens``), cached or not.
        completion_tokens: Tokens generated.
        latency_ms: Wall time of the request, retries included.
        cached_prompt_tokens: Prompt tokens the server took from its prefix cache instead of evaluating them, when
            it says: ``usage.prompt_tokens_details.cached_tokens`` (OpenAI, vLLM, recent llama-server) or
            ``timings.cache_n`` (llama-server). ``None`` when the server does not report it (llama-cpp-python's
            server, which reuses the previous request's prefix all the same).
    """

    content: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    cached_prompt_tokens: int | None = None


class LLMClient(Protocol):
    """One chat completion; the only I/O of LLM pre-annotation (``backend.adapters.llm.OpenAIChatClient``)."""

    @property
    def model(self) -> str:
        """The model name (part of the cache key)."""
        ...

    def complete(self, messages: Sequence[dict[str, str]], *, schema: dict[str, Any]) -> Completion:
        """Complete a chat; raise ``backend.errors.UpstreamError`` when the endpoint fails after its retries."""
        ...


# ---- Label Studio (``backend.adapters.label_studio.LabelStudioGateway`` implements all three) ----


class TaskSource(Protocol):
    """Where a run's annotations come from (Label Studio, or the stored webhook events)."""

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task with its annotations, in Label Studio's export shape."""
        ...


class PredictionSink(Protocol):
    """Where scored predictions go (Label Studio)."""

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task with its annotations."""
        ...

    def task_text(self, task_id: int, *, field: str = "text") -> str | None:
        """One task's text (``data[field]``)."""
        ...

    def push_prediction(self, task_id: int, *, result: list[dict[str, Any]], score: float, model_version: str) -> int:
        """Store one prediction on a task; return its id."""
        ...

    def update_prediction(
        self, prediction_id: int, *, result: list[dict[str, Any]], score: float, model_version: str
    ) -> None:
        """Replace a stored prediction."""
        ...

    def set_model_version(self, project_id: int, model_version: str) -> None:
        """Make the version the project's."""
        ...

    def task_predictions(self, task_id: int) -> dict[int, str]:
        """A task's predictions: id -> model version."""
        ...

    def delete_prediction(self, prediction_id: int) -> None:
        """Remove a prediction."""
        ...


class ReviewSink(PredictionSink, Protocol):
    """Where review predictions go (Label Studio): the scoring port, and the Data Manager tab."""

    def ensure_prediction_view(self, project_id: int, *, title: str, model_version: str) -> int:
        """A Data Manager tab of the project showing the tasks with a prediction of ``model_version``; its id."""
        ...
