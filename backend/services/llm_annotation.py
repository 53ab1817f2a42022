"""Pre-annotation with a prompted LLM: guide-driven prompt, few-shot demos, cache, cost, bounded concurrency.

No database connection is ever held while the LLM is asked: the cache is read in one short session before the
calls and each completion is stored in a short session of its own as soon as it arrives, so a completion that
outlives the request that asked for it still serves the next one. The demonstration index of a project is built
once per label watermark, in the background (``DemoIndex``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from annotation_guide import Guide
from backend.db.models import LLMCall, Project
from backend.db.session import session_scope
from backend.db.upsert import upsert
from backend.errors import UpstreamError
from backend.ports import Completion, LLMClient
from backend.services.label_state import labeled_examples
from backend.services.projects import guide_of, project_by_id
from backend.settings import LLMSettings
from ml.llm import (
    Demonstration,
    DemoSelector,
    Prices,
    build_messages,
    cost_usd,
    parse_response,
    prompt_version,
    response_schema,
)
from ml.prediction import ScoredSpan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LLMAnnotation:
    """The LLM's entities for one text, how many of its answers were dropped, and whether it came from the cache."""

    spans: list[ScoredSpan]
    dropped: int
    cached: bool


def cache_key(version: str, model: str, prompt: str) -> str:
    """The cache key of a completion: (prompt version, model, the full prompt including the text)."""
    return hashlib.sha256("\x1f".join((version, model, prompt)).encode("utf-8")).hexdigest()


class DemoIndex:
    """Each project's demonstration selector, built from its labelled tasks at one label watermark.

    ``get`` starts a build in the background when the project's labels moved on since the newest index (one build
    per project at a time). When that project's last build was quick (under ``QUICK_BUILD_S``: a small project)
    the new one is waited for, so a label shows as a demonstration in the very next prompt; otherwise the newest
    index answers at once and demonstrations lag new labels by one build: no request pays for fitting a big
    index (seconds at 100,000 labelled tasks). A project never built before waits for its first build.
    """

    QUICK_BUILD_S = 0.5

    def __init__(self, sessions: sessionmaker[Session], settings: LLMSettings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._lock = threading.Lock()
        self._built: dict[int, tuple[int, DemoSelector]] = {}
        self._building: dict[int, Future[DemoSelector]] = {}
        self._took: dict[int, float] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-index")

    def get(self, project_id: int, watermark: int) -> Future[DemoSelector]:
        """The selector to use now for a project whose label watermark is ``watermark``.

        Returns:
            A done future of the newest selector, or the future of the build under way (see the class).
        """
        with self._lock:
            built = self._built.get(project_id)
            fresh = built is not None and built[0] >= watermark
            if not fresh and project_id not in self._building:
                self._building[project_id] = self._pool.submit(self._build, project_id, watermark)
            quick = self._took.get(project_id, float("inf")) < self.QUICK_BUILD_S
            if built is not None and (fresh or not quick):
                done: Future[DemoSelector] = Future()
                done.set_result(built[1])
                return done
            return self._building[project_id]

    def close(self) -> None:
        """Cancel the builds not started and wait for the one under way (before the engine goes)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _build(self, project_id: int, watermark: int) -> DemoSelector:
        try:
            started = time.monotonic()
            with session_scope(self._sessions) as db:
                # the newest labels only: fitting TF-IDF on 100,000 texts takes about a minute (bench/RESULTS.md)
                examples = labeled_examples(db, project_by_id(db, project_id), newest=self._settings.demo_pool_max)
            limit = self._settings.demo_max_chars
            pool = [
                Demonstration(text, tuple((text[s.start : s.end], s.label) for s in sorted(spans)))
                for text, spans in examples
                if len(text) <= limit  # one huge labelled text must not make every prompt huge
            ]
            selector = DemoSelector(
                pool,
                k=self._settings.demonstrations,
                strategy=self._settings.demo_strategy,
                rng=np.random.default_rng(0),
            )
            with self._lock:
                if self._built.get(project_id, (-1,))[0] < watermark:
                    self._built[project_id] = (watermark, selector)
                self._took[project_id] = time.monotonic() - started
            log.info(
                "project %s: demonstration index of %s texts at watermark %s built in %.1f s",
                project_id,
                len(pool),
                watermark,
                time.monotonic() - started,
            )
            return selector
        finally:
            with self._lock:
                self._building.pop(project_id, None)


@dataclass(frozen=True)
class _Answer:
    """A completion's text, from the cache or fresh."""

    content: str
    cached: bool


class LLMAnnotator:
    """Turns texts into scored spans with an LLM; the only remote I/O is ``LLMClient.complete``.

    At most ``settings.concurrency`` completions run at once, over all requests.
    """

    def __init__(self, client: LLMClient, settings: LLMSettings, sessions: sessionmaker[Session]) -> None:
        self.client = client
        self.settings = settings
        self.prices = Prices(settings.price_input_per_million, settings.price_output_per_million)
        self.demos = DemoIndex(sessions, settings)
        self._sessions = sessions
        self._calls = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="llm")
        # each job waits on its completions: bounded, so a hanging LLM queues jobs instead of adding threads
        self._jobs = ThreadPoolExecutor(max_workers=32, thread_name_prefix="llm-job")
        self._closed = threading.Event()

    def close(self) -> None:
        """Stop: jobs and completions not started are cancelled.

        Completions under way finish unstored (the engine is going); index builds under way are waited for.
        """
        self._closed.set()
        self._jobs.shutdown(wait=False, cancel_futures=True)
        self._calls.shutdown(wait=False, cancel_futures=True)
        self.demos.close()

    def start(
        self, project: Project, texts: Sequence[str], *, watermark: int, deadline: float | None = None
    ) -> Future[list[LLMAnnotation]]:
        """Start annotating ``texts``; returns at once, holding no database session.

        Args:
            project: The project (its guide; loaded attributes only are read).
            texts: The texts, in order.
            watermark: The project's label watermark now (which demonstration index is fresh).
            deadline: ``time.monotonic()`` after which the caller no longer waits: completions not started by
                then are not asked for (those running go on and are cached).

        Returns:
            A future of one annotation per text, in order; it raises ``UpstreamError`` when the LLM failed.
        """
        return self._jobs.submit(self._annotate, project, list(texts), watermark, deadline)

    def annotate(self, project: Project, texts: Sequence[str], *, watermark: int) -> list[LLMAnnotation]:
        """Annotate texts and wait for all of them (the workers' LLM pass).

        Raises:
            UpstreamError: the LLM failed for some text (the others' completions are cached).
        """
        return self.start(project, texts, watermark=watermark).result()

    def _annotate(
        self, project: Project, texts: list[str], watermark: int, deadline: float | None
    ) -> list[LLMAnnotation]:
        guide = guide_of(project)
        version = prompt_version(guide)
        selector = self.demos.get(project.id, watermark).result(
            timeout=None if deadline is None else max(0.0, deadline - time.monotonic())
        )
        # the exact prompt (template, guide, demonstrations, text) is part of the key: new labels, new answers
        prompts = {
            i: build_messages(text, guide, selector.select(text)) for i, text in enumerate(texts) if text.strip()
        }
        keys = {i: cache_key(version, self.client.model, json.dumps(m, sort_keys=True)) for i, m in prompts.items()}
        with session_scope(self._sessions) as db:
            cached = {
                key: _Answer(content, cached=True)
                for key, content in db.execute(
                    select(LLMCall.cache_key, LLMCall.content).where(LLMCall.cache_key.in_(set(keys.values())))
                )
            }
        schema = response_schema(guide.labels)
        store = self._storer(project.id, version, guide)
        pending = {
            i: self._calls.submit(self._ask, prompts[i], schema, store(keys[i], texts[i]))
            for i, key in keys.items()
            if key not in cached
        }
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        wait_all(pending.values(), timeout=timeout)
        for future in pending.values():
            future.cancel()  # not started by the deadline: never asked
        answers = dict(cached)
        failures: list[UpstreamError] = []
        for i, future in pending.items():
            if not future.done() or future.cancelled():
                raise TimeoutError(f"the LLM did not answer within the wait ({len(pending)} texts asked)")
            outcome = future.result()
            if isinstance(outcome, UpstreamError):
                failures.append(outcome)
            else:
                answers[keys[i]] = _Answer(outcome.content, cached=False)
        if failures:
            raise UpstreamError(f"{failures[0]} ({len(failures)} of {len(prompts)} texts failed)")
        out = []
        for i, text in enumerate(texts):
            answer = answers.get(keys.get(i, ""))
            if answer is None:  # blank text: nothing to ask
                out.append(LLMAnnotation([], 0, cached=False))
                continue
            parsed = parse_response(answer.content, text, labels=guide.labels)
            spans = [
                ScoredSpan(s.start, s.end, s.label, text[s.start : s.end], self.settings.span_score)
                for s in parsed.spans
            ]
            out.append(LLMAnnotation(spans, parsed.dropped, cached=answer.cached))
        return out

    def _ask(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, object],
        store: Callable[[Completion], None],
    ) -> Completion | UpstreamError:
        """One completion, stored as soon as it arrives (one that outlives its request serves the next one)."""
        try:
            completion = self.client.complete(messages, schema=schema)
        except UpstreamError as exc:
            return exc
        store(completion)  # kept even when another text fails: a retry only asks for what is missing
        return completion

    def _storer(
        self, project_id: int, version: str, guide: Guide
    ) -> Callable[[str, str], Callable[[Completion], None]]:
        def for_text(key: str, text: str) -> Callable[[Completion], None]:
            def store(completion: Completion) -> None:
                dropped = parse_response(completion.content, text, labels=guide.labels).dropped
                values = {
                    "project_id": project_id,
                    "cache_key": key,
                    "model": self.client.model,
                    "prompt_version": version,
                    "content": completion.content,
                    "prompt_tokens": completion.prompt_tokens,
                    "completion_tokens": completion.completion_tokens,
                    "latency_ms": completion.latency_ms,
                    "cost_usd": cost_usd(completion.prompt_tokens, completion.completion_tokens, self.prices),
                    "dropped": dropped,
                }
                if self._closed.is_set():
                    return
                with session_scope(self._sessions) as db:
                    db.execute(
                        upsert(db, LLMCall).values(**values).on_conflict_do_nothing(index_elements=["cache_key"])
                    )

            return store

        return for_text
