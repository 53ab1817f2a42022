"""The prompted LLM's rows of ``nerloop compare``.

Zero-shot (the guide only), then k-shot with ``random`` and ``similar`` demonstrations (:class:`ml.llm.DemoSelector`)
drawn from the training pool; every answer cached in a file keyed by the LLM's name and the whole request, so that a
rerun sends only the requests it has no answer for.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from spacy.tokens import Doc

from annotation_guide import Guide
from ml.compare_rows import (
    Annotate,
    CompareError,
    CompareResult,
    LLMCallError,
    LLMReply,
    Row,
    Tracker,
    add_row,
    bar,
    score,
)
from ml.costs import llm_cost_per_1k_docs
from ml.llm import DemoSelector, DemoStrategy, build_messages, demonstrations_from_docs, parse_response, response_schema
from ml.prediction import ScoredSpan

Answer = tuple[LLMReply, float] | None  # the reply and its latency (s), or None when the request failed


def llm_plans(
    shots: tuple[int, ...], strategies: tuple[DemoStrategy, ...]
) -> list[tuple[str, int, DemoStrategy | None]]:
    """The LLM rows to run, in order: (name, shots, strategy; None for zero-shot)."""
    plans: list[tuple[str, int, DemoStrategy | None]] = []
    for k in sorted(set(shots)):
        plans += [("zero-shot", 0, None)] if k == 0 else [(f"{s} {k}-shot", k, s) for s in strategies]
    return plans


def llm_rows(
    result: CompareResult, pool: list[Doc], guide: Guide, annotate: Annotate, *, cache: Path, tracker: Tracker
) -> None:
    """Add one row per LLM plan to ``result``, scored on ``result.test_docs``.

    Raises:
        CompareError: every request of a row failed (the endpoint is down or refuses the requests).
    """
    options = result.options
    demos = demonstrations_from_docs([d for d in pool if d.ents][: options.demo_pool_max])
    for name, k, strategy in llm_plans(options.shots, options.strategies):
        selector = DemoSelector(demos, k=k, strategy=strategy or "random", rng=np.random.default_rng(options.seed))
        messages = [build_messages(d.text, guide, selector.select(d.text)) for d in result.test_docs]
        started = time.perf_counter()
        replies = _ask_all(result, messages, guide, annotate, cache=cache, what=name, tracker=tracker)
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
            score(result.test_docs, spans, guide, options.seed),
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
        add_row(result, row, spans)
        tracker.part_done(f"LLM {name}")


def _ask_all(
    result: CompareResult,
    requests: list[list[dict[str, str]]],
    guide: Guide,
    annotate: Annotate,
    *,
    cache: Path,
    what: str,
    tracker: Tracker,
) -> list[Answer]:
    """Every request, from the cache or the endpoint (``concurrency`` at once)."""
    from concurrent.futures import ThreadPoolExecutor

    schema = response_schema(guide.labels)

    def one(messages: list[dict[str, str]]) -> tuple[Answer, bool]:
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

    out: list[Answer] = []
    pool = ThreadPoolExecutor(max_workers=result.options.concurrency)
    try:
        with bar(len(requests), f"LLM {what}", result.options.progress) as shown:
            for answer, cached in pool.map(one, requests):
                out.append(answer)
                result.llm_cached += cached
                result.llm_requests += not cached
                shown.update(1)
                tracker.report(f"LLM {what}", len(out) / max(1, len(requests)))
    finally:
        # an interrupt (Ctrl-C, SIGTERM) returns at once, without waiting for the requests in flight (a minute each
        # for a 5-shot prompt on a CPU): the caller then stops the server, which fails them; queued ones never start
        pool.shutdown(wait=False, cancel_futures=True)
    return out


def _parse(reply: Answer, doc: Doc, guide: Guide, span_score: float) -> list[ScoredSpan]:
    if reply is None:
        return []
    parsed = parse_response(reply[0].content, doc.text, labels=guide.labels)
    return [ScoredSpan(s.start, s.end, s.label, doc.text[s.start : s.end], span_score) for s in parsed.spans]
