"""What ``nerloop compare`` is made of.

Its options, the LLM it talks to, its rows and its result, and the helpers its row builders share (scoring, progress).
The rows themselves are built by ``ml.compare_prompted`` (the LLM), ``ml.compare_tuned`` (the fine-tuned models) and
``ml.compare`` (the router, and the whole run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from spacy.tokens import Doc
from tqdm import tqdm

from annotation_guide import Guide
from ml.costs import CostSettings
from ml.errors import MLError
from ml.evaluation import EvaluationReport, score_spans
from ml.llm import DemoStrategy
from ml.prediction import ScoredSpan
from ml.training import TrainSettings
from ml.training.settings import Architecture

RowKind = Literal["llm", "fine-tuned", "router"]
LATENCY_SAMPLE = 50  # fine-tuned latency per document: measured one document at a time on this many test docs


class CompareError(MLError):
    """The comparison cannot run (bad options, too little data, an LLM that answers nothing)."""


class LLMCallError(MLError):
    """One LLM request failed after the client's retries; the row counts it and scores the document as empty."""


@dataclass(frozen=True)
class LLMReply:
    """One chat completion as the comparison needs it.

    Attributes:
        content: The answer's text.
        prompt_tokens: Prompt tokens (the response's ``usage``).
        completion_tokens: Completion tokens.
    """

    content: str
    prompt_tokens: int
    completion_tokens: int


# (messages, JSON schema of the answer) -> reply; raises LLMCallError when the endpoint fails.
Annotate = Callable[[Sequence[Mapping[str, str]], Mapping[str, Any]], LLMReply]


@dataclass(frozen=True)
class LLMEndpoint:
    """An LLM ready to annotate.

    Attributes:
        annotate: One request.
        name: What the answer cache is keyed by beside the request (the model file or URL and model name).
        slots: Requests it serves at once (llama-server's ``total_slots``; 1 when it does not say).
    """

    annotate: Annotate
    name: str
    slots: int = 1


class LLMConnector(Protocol):
    """Opens an LLM for a comparison.

    An OpenAI-compatible ``url``, or a GGUF file served for the comparison's duration (the backend's implementation:
    ``backend.adapters.compare_llm.open_endpoint``).
    """

    def __call__(
        self, *, url: str | None, gguf: Path | None, model: str, timeout_s: float, max_tokens: int
    ) -> AbstractContextManager[LLMEndpoint]:
        """Open the endpoint; close (stop the server it started) on exit."""
        ...


@dataclass(frozen=True)
class CompareOptions:
    """What to compare.

    Attributes:
        shots: Demonstrations per prompt; 0 is the zero-shot row, each k > 0 gives one row per strategy.
        strategies: Demonstration strategies of the k-shot rows.
        sizes: Training documents of each fine-tuned point (None: the whole training pool); sizes over the pool
            are clipped to it.
        architectures: Fine-tuned architectures (``cnn``, ``transformer``).
        train_settings: The base training settings (architecture replaced per row).
        limit_llm: Score the LLM (and, for a side-by-side table, every row) on a random sample of N test docs
            only (:func:`llm_sample`, seeded by ``seed``; 0: all); the fine-tuned rows are also scored on the whole
            test set.
        dev_fraction: Share of the training docs held out as the dev split (checkpoint, router), at most ``dev_max``;
            unused when the caller gives its own dev docs.
        dev_max: Most dev docs.
        demo_pool_max: Most training docs offered as demonstrations.
        concurrency: LLM requests at once (the server's slots).
        llm_name: The LLM's name, part of the answer cache key.
        span_score: Score given to LLM spans (they have no calibrated confidence).
        costs: Prices and rates.
        seed: Randomness of the ``limit_llm`` sample, of the random demonstrations and of the bootstrap.
        progress: Show progress bars on stderr.
    """

    shots: tuple[int, ...] = (0, 5, 10)
    strategies: tuple[DemoStrategy, ...] = ("random", "similar")
    sizes: tuple[int | None, ...] = (50, 100, 200, 500, None)
    architectures: tuple[Architecture, ...] = ("cnn", "transformer")
    train_settings: TrainSettings = field(default_factory=lambda: TrainSettings(max_steps=2000))
    limit_llm: int = 0
    dev_fraction: float = 0.2
    dev_max: int = 500
    demo_pool_max: int = 2000
    concurrency: int = 1
    llm_name: str = "llm"
    span_score: float = 0.5
    costs: CostSettings = field(default_factory=CostSettings)
    seed: int = 0
    progress: bool = True


@dataclass
class Row:
    """One line of the comparison: its scores on the test docs and what it costs.

    ``report`` is on the test docs every row shares (the LLM's sample under ``--limit-llm``); ``full_report`` is a
    fine-tuned row's score on the whole test set when the sample is smaller (None otherwise).
    """

    name: str
    kind: RowKind
    report: EvaluationReport
    latencies_s: list[float]
    docs_per_second: float
    cost_per_1k_docs: float
    wall_s: float
    architecture: str | None = None
    shots: int | None = None
    strategy: str | None = None
    train_docs: int | None = None
    labels: int = 0
    labels_per_type: dict[str, int] = field(default_factory=dict)
    prompt_tokens_per_doc: float = 0.0
    completion_tokens_per_doc: float = 0.0
    train_seconds: float | None = None
    train_cost: float = 0.0
    labelling_cost: float = 0.0
    errors: int = 0
    dev_f1: dict[str, float] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    full_report: EvaluationReport | None = None

    @property
    def latency_p50_s(self) -> float:
        """Median latency per document (seconds)."""
        return float(np.percentile(self.latencies_s, 50)) if self.latencies_s else float("nan")

    @property
    def latency_p95_s(self) -> float:
        """95th percentile latency per document (seconds)."""
        return float(np.percentile(self.latencies_s, 95)) if self.latencies_s else float("nan")

    @property
    def fixed_cost(self) -> float:
        """Paid once before serving: labelling plus training."""
        return self.labelling_cost + self.train_cost


@dataclass(frozen=True)
class CompareProgress:
    """Where a comparison is: the part it works on and the share of all parts done (0 to 1)."""

    stage: str
    fraction: float


OnProgress = Callable[[CompareProgress], None]


@dataclass
class CompareResult:
    """Every row, its predictions (per test doc, in order) and what the run did.

    ``test_docs`` are the docs every row is scored on (the ``limit_llm`` sample under a limit: ``all_test_docs[i]``
    for each ``i`` of ``sample_index``); ``all_test_docs`` the whole test set, on which the fine-tuned rows'
    ``full_predictions`` are made. ``dev_given``: the dev docs came from the caller (a project's dev tasks), not
    from the end of the training docs.
    """

    rows: list[Row]
    predictions: dict[str, list[list[ScoredSpan]]]
    test_docs: list[Doc]
    pool_docs: int
    dev_docs: int
    options: CompareOptions
    all_test_docs: list[Doc] = field(default_factory=list)
    full_predictions: dict[str, list[list[ScoredSpan]]] = field(default_factory=dict)
    sample_index: list[int] = field(default_factory=list)
    dev_given: bool = False
    wall_s: dict[str, float] = field(default_factory=dict)
    llm_requests: int = 0
    llm_cached: int = 0
    models_trained: int = 0
    models_reused: int = 0

    @property
    def sampled(self) -> bool:
        """Whether the rows are scored on a sample of the test set (``limit_llm`` cut it)."""
        return len(self.test_docs) < len(self.all_test_docs)


def llm_sample(total: int, limit: int, seed: int) -> list[int]:
    """Which test docs the rows share under ``limit_llm``.

    A uniform random sample without replacement (``numpy.random.default_rng(seed).choice``), in the test file's order. A
    test file's first documents are not a sample (CoNLL-2003's first sentences come from a few articles; a project's
    tasks are in id order).

    Args:
        total: Test docs.
        limit: Docs wanted (0 or ``total`` and more: all of them).
        seed: The sample's seed (the same seed and total give the same sample).

    Returns:
        Sorted indices into the test docs.
    """
    if limit <= 0 or limit >= total:
        return list(range(total))
    chosen = np.random.default_rng(seed).choice(total, size=limit, replace=False)
    return sorted(int(i) for i in chosen)


class Tracker:
    """The comparison's progress over its parts (each LLM row, each fine-tuned size), for ``on_progress``."""

    def __init__(self, parts: int, on_progress: OnProgress | None) -> None:
        self.parts = max(1, parts)
        self.done = 0
        self.on_progress = on_progress

    def report(self, stage: str, within: float = 0.0) -> None:
        """The current part is ``within`` (0 to 1) done."""
        if self.on_progress is not None:
            fraction = min(1.0, (self.done + min(max(within, 0.0), 1.0)) / self.parts)
            self.on_progress(CompareProgress(stage, round(fraction, 4)))

    def part_done(self, stage: str) -> None:
        """One more part is finished."""
        self.done += 1
        self.report(stage)


def score(docs: list[Doc], spans: list[list[ScoredSpan]], guide: Guide, seed: int) -> EvaluationReport:
    """A row's scores (:func:`ml.evaluation.score_spans`: exact and partial F1 with bootstrap intervals)."""
    return score_spans(docs, spans, labels=guide.labels, target_f1=guide.targets.f1, seed=seed)


def add_row(result: CompareResult, row: Row, spans: list[list[ScoredSpan]]) -> None:
    """Append a row and its predictions on the shared test docs."""
    result.rows.append(row)
    result.predictions[row.name] = spans


@contextmanager
def bar(total: int, what: str, show: bool) -> Iterator[Any]:
    """A tqdm progress bar on stderr (hidden when ``show`` is false)."""
    with tqdm(total=total, desc=what, unit="doc" if total != 100 else "%", disable=not show, leave=True) as shown:
        yield shown
