"""Rescoring the pool and the LLM pass, on real databases with a real spaCy model and a scripted LLM server.

Label Studio is replaced here by an in-memory store that records every call (what this test counts); the same
path against a real Label Studio and a real worker is tests/e2e/test_active_learning.py.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from spacy.language import Language
from sqlalchemy import select

from annotation_guide import Guide
from backend.adapters.llm import OpenAIChatClient
from backend.adapters.models import ModelRegistry
from backend.db.models import LLMCall, Prediction
from backend.db.session import session_scope
from backend.services import scoring
from backend.services.llm_annotation import LLMAnnotator
from backend.services.predictions import Predictor
from backend.services.projects import register_project
from backend.services.routing import set_override
from backend.services.scoring import llm_pass, rescore
from backend.settings import LLMSettings
from ml.converters import load_docs
from ml.promotion import in_dev_split
from ml.sampling_strategy import choose_batch
from ml.training import TrainedModel
from tests.conftest import open_db, promote, sessions_for
from tests.integration.scripted_llm import Script, scripted_llm

pytestmark = pytest.mark.integration


@dataclass
class RecordingLabelStudio:
    """Tasks and predictions in memory; counts creations and updates."""

    texts: dict[int, str]
    predictions: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    labelled: set[int] = field(default_factory=set)

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        return [
            {"id": i, "data": {"text": t}, "annotations": [{"result": []}] if i in self.labelled else []}
            for i, t in self.texts.items()
        ]

    def task_text(self, task_id: int, *, field: str = "text") -> str | None:
        assert field == "text"
        self.calls["read"] += 1
        return self.texts.get(task_id)

    def push_prediction(self, task_id: int, *, result: list[dict[str, Any]], score: float, model_version: str) -> int:
        self.calls["create"] += 1
        new_id = 1000 + len(self.predictions)
        self.predictions[new_id] = {"task": task_id, "result": result, "score": score, "model_version": model_version}
        return new_id

    def update_prediction(
        self, prediction_id: int, *, result: list[dict[str, Any]], score: float, model_version: str
    ) -> None:
        self.calls["update"] += 1
        self.predictions[prediction_id].update(result=result, score=score, model_version=model_version)

    def set_model_version(self, project_id: int, model_version: str) -> None:
        self.calls["version"] += 1


def _labels(prediction: dict[str, Any]) -> set[str]:
    return {r["value"]["labels"][0] for r in prediction["result"]}


def test_rescore_once_per_version_then_llm_pass_on_the_next_tasks(
    database_url: str, small_model: TrainedModel, conll_guide: Guide, shared_data: Path, blank_nlp: Language
) -> None:
    docs = load_docs(shared_data / "conll2003" / "test.txt", blank_nlp, labels=conll_guide.labels).docs
    # unique (a repeated text is an LLM cache hit), with a capitalised word (what the scripted LLM calls a person)
    unique = list(dict.fromkeys(d.text for d in docs if len(d.ents) >= 2 and re.search(r"\b[A-Z][a-z]+\b", d.text)))
    texts = {100 + i: text for i, text in enumerate(unique[:30])}
    store = RecordingLabelStudio(texts)
    script = Script()
    with scripted_llm(script) as url, sessions_for(database_url) as sessions, session_scope(sessions) as db:
        settings = LLMSettings(base_url=url, response_format="none", max_retries=0, timeout_s=5, demonstrations=0)
        annotator = LLMAnnotator(OpenAIChatClient(settings), settings, sessions)
        project = register_project(db, ls_project_id=9, guide=conll_guide, retrain_threshold=5)
        promote(db, project, small_model)
        for label in ("location", "organisation", "misc"):
            set_override(db, project, label=label, route="model")
        set_override(db, project, label="person", route="llm")
        predictor = Predictor(ModelRegistry(), annotator, max_text_chars=5000)

        done = rescore(db, project, store, predictor, batch_size=5, dev_fraction=0.2)
        assert (done.tasks, done.awaiting_llm) == (30, 30)
        assert script.requests == []  # scoring never waits on the LLM
        assert store.calls["create"] == 30
        assert len({p["task"] for p in store.predictions.values()}) == 30
        assert all("person" not in _labels(p) for p in store.predictions.values())
        model_labels = set().union(*(_labels(p) for p in store.predictions.values()))
        assert model_labels
        assert model_labels <= {"location", "organisation", "misc"}

        again = rescore(db, project, store, predictor, batch_size=5, dev_fraction=0.2)  # a retried job
        assert again.tag == done.tag
        assert store.calls["create"] == 30
        assert store.calls["update"] == 30
        assert len(store.predictions) == 30

        assert llm_pass(db, project, store, annotator, limit=8) == 8
        assert len(script.requests) == 8
        assert store.calls["update"] == 38
        assert len(store.predictions) == 30
        rows = db.scalars(select(Prediction).where(Prediction.model_version == done.tag)).all()
        first = sorted(rows, key=lambda r: (r.score, r.id))[:8]
        assert all(r.complete for r in first)
        assert sum(r.complete for r in rows) == 8
        for row in first:  # the scripted LLM tags capitalised words as person: they show next to the model's
            pushed = store.predictions[row.ls_prediction_id or 0]
            assert "person" in _labels(pushed)
            assert pushed["score"] == row.score
            text = texts[row.ls_task_id]
            assert all(r["value"]["text"] == text[r["value"]["start"] : r["value"]["end"]] for r in pushed["result"])
        assert db.scalar(select(LLMCall.id).limit(1)) is not None

        assert llm_pass(db, project, store, annotator, limit=8) == 0  # redelivered: nothing left to do
        assert len(script.requests) == 8
        assert llm_pass(db, project, store, annotator, limit=10) == 2

        # every fifth place of the queue is a held-out task, in an order no model score touches (issue #12)
        held = {task for task in texts if in_dev_split("9", task, fraction=0.2)}
        queue = [r.ls_task_id for r in sorted(rows, key=lambda r: r.score)]
        assert held
        assert [task in held for task in queue[: 5 * len(held)]] == [i % 5 == 4 for i in range(5 * len(held))]
        held_order = [task for task in queue if task in held]

        # the annotators label the whole batch: the next rescore picks another one and pushes the new scores
        store.labelled |= set([task for task in queue if task not in held][:5])
        rescore(db, project, store, predictor, batch_size=5, dev_fraction=0.2)
        with open_db(database_url) as other:  # what was committed, read by another session
            stored = {r.ls_prediction_id: r.score for r in other.scalars(select(Prediction))}
        pushed = {pid: p["score"] for pid, p in store.predictions.items() if p["task"] not in store.labelled}
        assert pushed == {pid: stored[pid] for pid in pushed}
        requeued = [store.predictions[pid]["task"] for pid in sorted(pushed, key=lambda pid: pushed[pid])]
        assert [task for task in requeued if task in held] == held_order  # the held-out order did not move


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the seed's path is the same on both
def test_rescore_breaks_the_batch_ties_with_the_given_seed(
    database_url: str,
    small_model: TrainedModel,
    conll_guide: Guide,
    shared_data: Path,
    blank_nlp: Language,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = load_docs(shared_data / "conll2003" / "test.txt", blank_nlp, labels=conll_guide.labels).docs
    texts = {100 + i: text for i, text in enumerate(dict.fromkeys(d.text for d in docs if len(d.ents) >= 2))}
    store = RecordingLabelStudio(dict(list(texts.items())[:12]))
    states: list[dict[str, Any]] = []

    def spy(*args: Any, rng: np.random.Generator, **kwargs: Any) -> Any:
        states.append(rng.bit_generator.state)  # before the batch draws from it
        return choose_batch(*args, rng=rng, **kwargs)

    monkeypatch.setattr(scoring, "choose_batch", spy)
    with sessions_for(database_url) as sessions, session_scope(sessions) as db:
        project = register_project(db, ls_project_id=11, guide=conll_guide)
        promote(db, project, small_model)
        for label in conll_guide.labels:
            set_override(db, project, label=label, route="model")
        predictor = Predictor(ModelRegistry(), None, max_text_chars=5000)
        rescore(db, project, store, predictor, batch_size=3, dev_fraction=0.2)
        rescore(db, project, store, predictor, batch_size=3, dev_fraction=0.2, sampling_seed=1234)
    assert states == [np.random.default_rng(seed).bit_generator.state for seed in (0, 1234)]
