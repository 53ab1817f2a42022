"""Pre-annotation with a prompted LLM: guide-driven prompt, few-shot demos, cache, cost, bounded concurrency."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_guide import Guide
from backend.adapters.llm import Completion, LLMClient
from backend.db.models import LLMCall, Project
from backend.db.upsert import upsert
from backend.services.errors import UpstreamError
from backend.services.label_state import labeled_examples
from backend.services.projects import guide_of
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


@dataclass(frozen=True)
class LLMAnnotation:
    """The LLM's entities for one text, how many of its answers were dropped, and whether it came from the cache."""

    spans: list[ScoredSpan]
    dropped: int
    cached: bool


def cache_key(version: str, model: str, prompt: str) -> str:
    """The cache key of a completion: (prompt version, model, the full prompt including the text)."""
    return hashlib.sha256("\x1f".join((version, model, prompt)).encode("utf-8")).hexdigest()


def _demonstrations(db: Session, project: Project) -> list[Demonstration]:
    return [
        Demonstration(text, tuple((text[s.start : s.end], s.label) for s in sorted(spans)))
        for text, spans in labeled_examples(db, project)
    ]


class LLMAnnotator:
    """Turns texts into scored spans with an LLM; the only I/O is ``LLMClient.complete``."""

    def __init__(self, client: LLMClient, settings: LLMSettings) -> None:
        self.client = client
        self.settings = settings
        self.prices = Prices(settings.price_input_per_million, settings.price_output_per_million)

    def annotate(self, db: Session, project: Project, texts: Sequence[str]) -> list[LLMAnnotation]:
        """Annotate texts, serving repeats from the cache and storing every new completion with its cost.

        Args:
            db: The session (completions are flushed; the caller commits).
            project: The project (its guide and its labeled examples for the demonstrations).
            texts: The texts, in order.

        Returns:
            One annotation per text, in order.
        """
        guide = guide_of(project)
        version = prompt_version(guide)
        selector = DemoSelector(
            _demonstrations(db, project),
            k=self.settings.demonstrations,
            strategy=self.settings.demo_strategy,
            rng=np.random.default_rng(0),
        )
        # the exact prompt (template, guide, demonstrations, text) is part of the key: new labels, new answers
        prompts = {
            i: build_messages(text, guide, selector.select(text)) for i, text in enumerate(texts) if text.strip()
        }
        keys = {i: cache_key(version, self.client.model, json.dumps(m, sort_keys=True)) for i, m in prompts.items()}
        rows = {r.cache_key: r for r in db.scalars(select(LLMCall).where(LLMCall.cache_key.in_(set(keys.values()))))}
        missing = [i for i, key in keys.items() if key not in rows]
        failures: list[UpstreamError] = []
        completions = self._complete_all(guide, [prompts[i] for i in missing])
        for i, completion in zip(missing, completions, strict=True):
            if isinstance(completion, UpstreamError):
                failures.append(completion)
            else:  # kept even when another text fails: a retry only asks for what is missing
                rows[keys[i]] = self._store(db, project, keys[i], version, texts[i], completion, guide)
        if failures:
            db.commit()
            raise UpstreamError(f"{failures[0]} ({len(failures)} of {len(prompts)} texts failed)")
        out = []
        for i, text in enumerate(texts):
            row = rows.get(keys.get(i, ""))
            if row is None:  # blank text: nothing to ask
                out.append(LLMAnnotation([], 0, cached=False))
                continue
            parsed = parse_response(row.content, text, labels=guide.labels)
            spans = [
                ScoredSpan(s.start, s.end, s.label, text[s.start : s.end], self.settings.span_score)
                for s in parsed.spans
            ]
            out.append(LLMAnnotation(spans, parsed.dropped, cached=i not in missing))
        return out

    def _complete_all(self, guide: Guide, prompts: Sequence[list[dict[str, str]]]) -> list[Completion | UpstreamError]:
        schema = response_schema(guide.labels)

        def ask(messages: list[dict[str, str]]) -> Completion | UpstreamError:
            try:
                return self.client.complete(messages, schema=schema)
            except UpstreamError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            return list(pool.map(ask, prompts))

    def _store(
        self, db: Session, project: Project, key: str, version: str, text: str, completion: Completion, guide: Guide
    ) -> LLMCall:
        dropped = parse_response(completion.content, text, labels=guide.labels).dropped
        values = {
            "project_id": project.id,
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
        db.execute(upsert(db, LLMCall).values(**values).on_conflict_do_nothing(index_elements=["cache_key"]))
        return db.scalars(select(LLMCall).where(LLMCall.cache_key == key)).one()
