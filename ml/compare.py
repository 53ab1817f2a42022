"""Prompting vs fine-tuning on the same test documents: the rows of ``nerloop compare`` (pure: no web, database or
Celery; the LLM comes in as a callable, so a CLI, a Celery job or a test each bring their own endpoint).

Rows, all scored by :func:`ml.evaluation.score_spans` on the same test documents:

- the prompted LLM: zero-shot (the guide only), then k-shot with ``random`` and ``similar`` demonstrations
  (:class:`ml.llm.DemoSelector`) drawn from the training pool;
- each fine-tuned architecture (:func:`ml.training.train`) on nested prefixes of the training pool (a learning
  curve), its checkpoint chosen on a dev split held out from the training side;
- the per-type router (:func:`ml.routing.compute_routes`): the largest fine-tuned model for the types whose dev F1
  meets the guide's target, the LLM row with the most ``similar`` shots for the rest.

Resumable: every LLM answer is cached in a file keyed by the model name and the whole request, and every trained
size in a directory keyed by its data, dev split and settings, so that a rerun on the same inputs makes no new
request and trains nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from spacy.tokens import Doc
from tqdm import tqdm

from annotation_guide import Guide
from ml.costs import CostSettings, compute_cost, labelling_cost, llm_cost_per_1k_docs, serving_cost_per_1k_docs
from ml.errors import MLError
from ml.evaluation import EvaluationReport, score_spans
from ml.llm import DemoSelector, DemoStrategy, build_messages, demonstrations_from_docs, parse_response, response_schema
from ml.prediction import ScoredSpan
from ml.routing import compute_routes, merge_routed
from ml.training import TrainSettings, fingerprint, train

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
    """Opens an LLM for a comparison: an OpenAI-compatible ``url``, or a GGUF file served for the comparison's
    duration (the backend's implementation: ``backend.adapters.compare_llm.open_endpoint``)."""

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
        limit_llm: Score every row on the first N test docs only (0: all); the LLM is the slow part.
        dev_fraction: Share of the training docs held out as the dev split (checkpoint, router), at most ``dev_max``.
        dev_max: Most dev docs.
        demo_pool_max: Most training docs offered as demonstrations.
        concurrency: LLM requests at once (the server's slots).
        llm_name: The LLM's name, part of the answer cache key.
        span_score: Score given to LLM spans (they have no calibrated confidence).
        costs: Prices and rates.
        seed: Randomness of the random demonstrations and of the bootstrap.
        progress: Show progress bars on stderr.
    """

    shots: tuple[int, ...] = (0, 5, 10)
    strategies: tuple[DemoStrategy, ...] = ("random", "similar")
    sizes: tuple[int | None, ...] = (50, 100, 200, 500, None)
    architectures: tuple[Literal["cnn", "transformer"], ...] = ("cnn", "transformer")
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
    """One line of the comparison: its scores on the test docs and what it costs."""

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


@dataclass
class CompareResult:
    """Every row, its predictions (per test doc, in order) and what the run did."""

    rows: list[Row]
    predictions: dict[str, list[list[ScoredSpan]]]
    test_docs: list[Doc]
    pool_docs: int
    dev_docs: int
    options: CompareOptions
    wall_s: dict[str, float] = field(default_factory=dict)
    llm_requests: int = 0
    llm_cached: int = 0
    models_trained: int = 0
    models_reused: int = 0


def compare(
    train_docs: Sequence[Doc],
    test_docs: Sequence[Doc],
    guide: Guide,
    *,
    annotate: Annotate | None,
    options: CompareOptions,
    work_dir: str | Path,
) -> CompareResult:
    """Run every row of the comparison.

    Args:
        train_docs: Gold training docs (the dev split is taken from their end).
        test_docs: Gold test docs, touched by nothing but the scoring.
        guide: The guide (labels, target F1, prompt).
        annotate: The LLM (None: no LLM rows, no router).
        options: What to compare.
        work_dir: Where the answer cache and the trained models live (reused by a rerun).

    Returns:
        The rows in order (LLM, fine-tuned by architecture and size, routers) with their predictions.

    Raises:
        CompareError: no test doc, too few training docs, unknown options, or every LLM request failed.
    """
    pool, dev, tests = _split(train_docs, test_docs, options)
    work = Path(work_dir)
    result = CompareResult([], {}, tests, len(pool), len(dev), options)
    if annotate is not None:
        started = time.perf_counter()
        _llm_rows(result, pool, guide, annotate, cache=work / "cache" / "llm")
        result.wall_s["llm"] = time.perf_counter() - started
    started = time.perf_counter()
    for architecture in options.architectures:
        for size in _sizes(options.sizes, len(pool)):
            _fine_tuned_row(result, pool[:size], dev, guide, architecture=architecture, models=work / "models")
    result.wall_s["fine-tuning"] = time.perf_counter() - started
    if annotate is not None:
        _router_rows(result, guide)
    return result


def _split(
    train_docs: Sequence[Doc], test_docs: Sequence[Doc], options: CompareOptions
) -> tuple[list[Doc], list[Doc], list[Doc]]:
    tests = [d for d in test_docs if d.text.strip()]
    if options.limit_llm:
        tests = tests[: options.limit_llm]
    if not tests:
        raise CompareError("the test set has no document; give a --test file with gold entities")
    docs = [d for d in train_docs if d.text.strip()]
    if len(docs) < 5:
        raise CompareError(f"{len(docs)} training docs: at least 5 are needed (a dev split is taken from them)")
    if not 0 < options.dev_fraction < 1 or options.concurrency < 1 or any(k < 0 for k in options.shots):
        raise CompareError("dev fraction must lie in (0, 1), concurrency be 1 or more and shots 0 or more")
    n_dev = max(1, min(options.dev_max, round(len(docs) * options.dev_fraction)))
    return docs[:-n_dev], docs[-n_dev:], tests


def _sizes(sizes: Sequence[int | None], pool: int) -> list[int]:
    return sorted({min(pool, s) if s is not None else pool for s in sizes if s is None or s > 0})


# ------------------------------------------------------------------------------------------------------------ LLM


def _llm_rows(result: CompareResult, pool: list[Doc], guide: Guide, annotate: Annotate, *, cache: Path) -> None:
    options = result.options
    demos = demonstrations_from_docs([d for d in pool if d.ents][: options.demo_pool_max])
    plans: list[tuple[str, int, DemoStrategy | None]] = []
    for k in sorted(set(options.shots)):
        plans += [("zero-shot", 0, None)] if k == 0 else [(f"{s} {k}-shot", k, s) for s in options.strategies]
    for name, k, strategy in plans:
        selector = DemoSelector(demos, k=k, strategy=strategy or "random", rng=np.random.default_rng(options.seed))
        messages = [build_messages(d.text, guide, selector.select(d.text)) for d in result.test_docs]
        started = time.perf_counter()
        replies = _ask_all(result, messages, guide, annotate, cache=cache, what=name)
        wall = time.perf_counter() - started
        spans = [
            _parse(reply, doc, guide, options.span_score) for reply, doc in zip(replies, result.test_docs, strict=True)
        ]
        answered = [r for r in replies if r is not None]
        if not answered:
            raise CompareError(f"{name}: every LLM request failed; check the endpoint (--llm-url) and its log")
        latencies = [r[1] for r in answered]
        prompt = float(np.mean([r[0].prompt_tokens for r in answered]))
        completion = float(np.mean([r[0].completion_tokens for r in answered]))
        # from the recorded latencies, not this run's wall time: a rerun served from the cache reports the same
        rate = options.concurrency * len(latencies) / max(sum(latencies), 1e-9)
        row = Row(
            f"LLM {name}",
            "llm",
            _score(result.test_docs, spans, guide, options.seed),
            latencies,
            rate,
            llm_cost_per_1k_docs(prompt, completion, docs_per_second=rate, costs=options.costs),
            wall,
            shots=k,
            strategy=strategy or "zero-shot",
            prompt_tokens_per_doc=prompt,
            completion_tokens_per_doc=completion,
            errors=len(replies) - len(answered),
        )
        _add(result, row, spans)


def _ask_all(
    result: CompareResult,
    requests: list[list[dict[str, str]]],
    guide: Guide,
    annotate: Annotate,
    *,
    cache: Path,
    what: str,
) -> list[tuple[LLMReply, float] | None]:
    """Every request, from the cache or the endpoint (``concurrency`` at once): (reply, latency s) or None."""
    schema = response_schema(guide.labels)

    def one(messages: list[dict[str, str]]) -> tuple[tuple[LLMReply, float] | None, bool]:
        key = hashlib.sha256(json.dumps([result.options.llm_name, messages, schema]).encode("utf-8")).hexdigest()
        path = cache / key[:2] / f"{key}.json"
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            return (LLMReply(saved["content"], saved["prompt_tokens"], saved["completion_tokens"]), saved["s"]), True
        started = time.perf_counter()
        try:
            reply = annotate(messages, schema)
        except LLMCallError:
            return None, False
        latency = time.perf_counter() - started
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps({**asdict(reply), "s": latency}), encoding="utf-8")
        partial.replace(path)  # whole or absent: an interrupted run never leaves half an answer
        return (reply, latency), False

    with (
        ThreadPoolExecutor(max_workers=result.options.concurrency) as pool,
        _bar(len(requests), f"LLM {what}", result.options.progress) as bar,
    ):
        out: list[tuple[LLMReply, float] | None] = []
        for answer, cached in pool.map(one, requests):
            out.append(answer)
            result.llm_cached += cached
            result.llm_requests += not cached
            bar.update(1)
    return out


def _parse(reply: tuple[LLMReply, float] | None, doc: Doc, guide: Guide, score: float) -> list[ScoredSpan]:
    if reply is None:
        return []
    parsed = parse_response(reply[0].content, doc.text, labels=guide.labels)
    return [ScoredSpan(s.start, s.end, s.label, doc.text[s.start : s.end], score) for s in parsed.spans]


# ------------------------------------------------------------------------------------------------------ fine-tuned


def _fine_tuned_row(
    result: CompareResult,
    train_docs: list[Doc],
    dev: list[Doc],
    guide: Guide,
    *,
    architecture: Literal["cnn", "transformer"],
    models: Path,
) -> None:
    from ml.model_store import load_model

    options = result.options
    settings = options.train_settings.model_copy(update={"architecture": architecture})
    path, trained = _trained(result, train_docs, dev, guide, settings=settings, models=models)
    started = time.perf_counter()
    model = load_model(path / trained["version"])
    spans = model.predict(result.test_docs)  # batched
    rate = len(result.test_docs) / max(time.perf_counter() - started, 1e-9)
    latencies = []
    for doc in result.test_docs[:LATENCY_SAMPLE]:
        one = time.perf_counter()
        model.predict([doc])
        latencies.append(time.perf_counter() - one)
    per_type = Counter(e.label_ for d in train_docs for e in d.ents)
    labels = sum(per_type.values())
    row = Row(
        f"{architecture} {len(train_docs)} docs",
        "fine-tuned",
        _score(result.test_docs, spans, guide, options.seed),
        latencies,
        rate,
        serving_cost_per_1k_docs(rate, options.costs.compute_per_hour),
        trained["seconds"] + time.perf_counter() - started,
        architecture=architecture,
        train_docs=len(train_docs),
        labels=labels,
        labels_per_type={label: per_type.get(label, 0) for label in guide.labels},
        train_seconds=trained["seconds"],
        train_cost=compute_cost(trained["seconds"], options.costs.compute_per_hour),
        labelling_cost=labelling_cost(labels, options.costs),
        dev_f1=trained["dev_f1"],
    )
    _add(result, row, spans)


def _trained(
    result: CompareResult,
    train_docs: list[Doc],
    dev: list[Doc],
    guide: Guide,
    *,
    settings: TrainSettings,
    models: Path,
) -> tuple[Path, dict[str, Any]]:
    """The model of one size: reused when the same data, dev split, guide and settings were trained before."""
    key = json.dumps([fingerprint(train_docs), fingerprint(dev), guide.sha256, settings.model_dump(mode="json")])
    path = models / f"{settings.architecture}-{len(train_docs)}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    record = path / "trained.json"
    if record.is_file():
        saved: dict[str, Any] = json.loads(record.read_text(encoding="utf-8"))
        if (path / saved["version"]).is_dir():
            result.models_reused += 1
            return path, saved
    name = f"train {settings.architecture} on {len(train_docs)} docs"
    with _bar(100, name, result.options.progress) as bar:

        def on_progress(progress: Any) -> None:
            bar.n = round(100 * progress.fraction)
            bar.set_postfix_str(progress.stage)

        started = time.perf_counter()
        trained = train(train_docs, dev, guide, settings=settings, output_root=path, on_progress=on_progress)
    saved = {
        "version": trained.version,
        "seconds": time.perf_counter() - started,
        "dev_f1": {label: s.f1 for label, s in trained.dev_report.per_type.items()},
    }
    record.write_text(json.dumps(saved, indent=2), encoding="utf-8")
    result.models_trained += 1
    return path, saved


# -------------------------------------------------------------------------------------------------------- routers


def _router_rows(result: CompareResult, guide: Guide) -> None:
    llm_rows = [r for r in result.rows if r.kind == "llm"]
    if not llm_rows:
        return
    llm = max(llm_rows, key=lambda r: (r.strategy == "similar", r.shots or 0))
    for architecture in result.options.architectures:
        tuned = [r for r in result.rows if r.kind == "fine-tuned" and r.architecture == architecture]
        if not tuned:
            continue
        model = tuned[-1]  # the largest size
        routes = compute_routes(guide.labels, per_type_f1=model.dev_f1, target_f1=guide.targets.f1)
        spans = [
            merge_routed(m, s, routes)
            for m, s in zip(result.predictions[model.name], result.predictions[llm.name], strict=True)
        ]
        uses_llm = any(e.route == "llm" for e in routes.values())
        serving = model.cost_per_1k_docs + (llm.cost_per_1k_docs if uses_llm else 0.0)
        row = Row(
            f"router {architecture} + {llm.name}",
            "router",
            _score(result.test_docs, spans, guide, result.options.seed),
            llm.latencies_s if uses_llm else model.latencies_s,
            min(llm.docs_per_second, model.docs_per_second) if uses_llm else model.docs_per_second,
            serving,
            0.0,
            architecture=architecture,
            train_docs=model.train_docs,
            labels=model.labels,
            labels_per_type=model.labels_per_type,
            prompt_tokens_per_doc=llm.prompt_tokens_per_doc if uses_llm else 0.0,
            completion_tokens_per_doc=llm.completion_tokens_per_doc if uses_llm else 0.0,
            train_seconds=model.train_seconds,
            train_cost=model.train_cost,
            labelling_cost=model.labelling_cost,
            dev_f1=model.dev_f1,
            routes={label: entry.route for label, entry in routes.items()},
        )
        _add(result, row, spans)


# ---------------------------------------------------------------------------------------------------------- shared


def _score(docs: list[Doc], spans: list[list[ScoredSpan]], guide: Guide, seed: int) -> EvaluationReport:
    return score_spans(docs, spans, labels=guide.labels, target_f1=guide.targets.f1, seed=seed)


def _add(result: CompareResult, row: Row, spans: list[list[ScoredSpan]]) -> None:
    result.rows.append(row)
    result.predictions[row.name] = spans


@contextmanager
def _bar(total: int, what: str, show: bool) -> Iterator[Any]:
    with tqdm(total=total, desc=what, unit="doc" if total != 100 else "%", disable=not show, leave=True) as bar:
        yield bar
