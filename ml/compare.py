"""Prompting vs fine-tuning on the same test documents.

The rows of ``nerloop compare`` (pure: no web, database or Celery; the LLM comes in as a callable, so a CLI, a Celery
job or a test each bring their own endpoint).

Rows, all scored by :func:`ml.evaluation.score_spans` on the same test documents:

- the prompted LLM (``ml.compare_prompted``): zero-shot (the guide only), then k-shot with ``random`` and
  ``similar`` demonstrations (:class:`ml.llm.DemoSelector`) drawn from the training pool;
- each fine-tuned architecture (``ml.compare_tuned``, :func:`ml.training.train`) on nested prefixes of the training
  pool (a learning curve), its checkpoint chosen on a dev split held out from the training side; under a
  ``limit_llm`` sample (a seeded random sample of the test docs, :func:`ml.compare_rows.llm_sample`) it is also
  scored on the whole test set;
- the per-type router (:func:`ml.routing.compute_routes`): the largest fine-tuned model for the types whose dev F1
  meets the guide's target, the LLM row with the most ``similar`` shots for the rest.

Resumable: every LLM answer is cached in a file keyed by the model name and the whole request, and every trained
size in a directory keyed by its data, dev split and settings, so that a rerun on the same inputs makes no new
request and trains nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from spacy.tokens import Doc

from annotation_guide import Guide
from ml.compare_prompted import llm_plans, llm_rows
from ml.compare_rows import (
    Annotate,
    CompareError,
    CompareOptions,
    CompareProgress,
    CompareResult,
    LLMCallError,
    LLMConnector,
    LLMEndpoint,
    LLMReply,
    OnProgress,
    Row,
    RowKind,
    Tracker,
    add_row,
    llm_sample,
    score,
)
from ml.compare_tuned import fine_tuned_row
from ml.routing import compute_routes, merge_routed

__all__ = [
    "Annotate",
    "CompareError",
    "CompareOptions",
    "CompareProgress",
    "CompareResult",
    "LLMCallError",
    "LLMConnector",
    "LLMEndpoint",
    "LLMReply",
    "OnProgress",
    "Row",
    "RowKind",
    "compare",
]


def compare(
    train_docs: Sequence[Doc],
    test_docs: Sequence[Doc],
    guide: Guide,
    *,
    annotate: Annotate | None,
    options: CompareOptions,
    work_dir: str | Path,
    dev_docs: Sequence[Doc] | None = None,
    on_progress: OnProgress | None = None,
) -> CompareResult:
    """Run every row of the comparison.

    Args:
        train_docs: Gold training docs (without ``dev_docs``, the dev split is taken from their end).
        test_docs: Gold test docs, touched by nothing but the scoring.
        guide: The guide (labels, target F1, prompt).
        annotate: The LLM (None: no LLM rows, no router).
        options: What to compare.
        work_dir: Where the answer cache and the trained models live (reused by a rerun).
        dev_docs: The dev split (checkpoint, router), when the caller has one (a project's dev tasks); empty or
            None: ``options.dev_fraction`` of the training docs.
        on_progress: Called with the part under way and the share of all parts done (a job's progress).

    Returns:
        The rows in order (LLM, fine-tuned by architecture and size, routers) with their predictions.

    Raises:
        CompareError: no test doc, too few training docs, unknown options, or every LLM request failed.
    """
    pool, dev, tests = _split(train_docs, test_docs, options, dev_docs)
    work = Path(work_dir)
    index = llm_sample(len(tests), options.limit_llm, options.seed)
    result = CompareResult([], {}, [tests[i] for i in index], len(pool), len(dev), options, all_test_docs=tests)
    result.sample_index, result.dev_given = index, any(d.text.strip() for d in dev_docs or ())
    sizes = _sizes(options.sizes, len(pool))
    llm_parts = len(llm_plans(options.shots, options.strategies)) if annotate is not None else 0
    tracker = Tracker(llm_parts + len(options.architectures) * len(sizes), on_progress)
    if annotate is not None:
        started = time.perf_counter()
        llm_rows(result, pool, guide, annotate, cache=work / "cache" / "llm", tracker=tracker)
        result.wall_s["llm"] = time.perf_counter() - started
    started = time.perf_counter()
    for architecture in options.architectures:
        for size in sizes:
            fine_tuned_row(
                result, pool[:size], dev, guide, architecture=architecture, models=work / "models", tracker=tracker
            )
    result.wall_s["fine-tuning"] = time.perf_counter() - started
    if annotate is not None:
        _router_rows(result, guide)
    return result


def _split(
    train_docs: Sequence[Doc], test_docs: Sequence[Doc], options: CompareOptions, dev_docs: Sequence[Doc] | None
) -> tuple[list[Doc], list[Doc], list[Doc]]:
    tests = [d for d in test_docs if d.text.strip()]
    if not tests:
        raise CompareError("the test set has no document; give a --test file with gold entities")
    docs = [d for d in train_docs if d.text.strip()]
    dev = [d for d in dev_docs or () if d.text.strip()]
    if len(docs) < (1 if dev else 5):
        raise CompareError(f"{len(docs)} training docs: at least 5 are needed (a dev split is taken from them)")
    if not 0 < options.dev_fraction < 1 or options.concurrency < 1 or any(k < 0 for k in options.shots):
        raise CompareError("dev fraction must lie in (0, 1), concurrency be 1 or more and shots 0 or more")
    if dev:
        return docs, dev, tests
    n_dev = max(1, min(options.dev_max, round(len(docs) * options.dev_fraction)))
    return docs[:-n_dev], docs[-n_dev:], tests


def _sizes(sizes: Sequence[int | None], pool: int) -> list[int]:
    return sorted({min(pool, s) if s is not None else pool for s in sizes if s is None or s > 0})


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
        row = Row(
            f"router {architecture} + {llm.name}",
            "router",
            score(result.test_docs, spans, guide, result.options.seed),
            llm.latencies_s if uses_llm else model.latencies_s,
            min(llm.docs_per_second, model.docs_per_second) if uses_llm else model.docs_per_second,
            model.cost_per_1k_docs + (llm.cost_per_1k_docs if uses_llm else 0.0),
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
        add_row(result, row, spans)
