"""The prompted-LLM pre-annotator against a real llama.cpp server running the tiny SmolLM2 GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest
import spacy
from sqlalchemy import func, select

from annotation_guide import Guide
from backend.adapters.llm import OpenAIChatClient
from backend.db.models import LLMCall
from backend.db.session import session_scope
from backend.services.llm_annotation import LLMAnnotator
from backend.services.projects import register_project
from backend.settings import LLMSettings
from ml.converters import load_docs
from tests.conftest import sessions_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_real_llm_spans_are_in_the_text_costed_and_cached(
    llama_server: str, tmp_path: Path, conll_guide: Guide, shared_data: Path
) -> None:
    from backend.db.session import upgrade

    url = f"sqlite:///{tmp_path / 'n.db'}"
    upgrade(url)
    texts = [
        d.text
        for d in load_docs(shared_data / "conll2003" / "dev.txt", spacy.blank("en"), labels=conll_guide.labels).docs[
            1:4
        ]
    ]
    settings = LLMSettings(
        base_url=llama_server,
        response_format="json_object",
        max_tokens=160,
        demonstrations=0,
        price_input_per_million=1.0,
        price_output_per_million=2.0,
        concurrency=2,
    )
    with sessions_for(url) as sessions, session_scope(sessions) as db:
        annotator = LLMAnnotator(OpenAIChatClient(settings), settings, sessions)
        project = register_project(db, ls_project_id=1, guide=conll_guide)
        db.commit()  # the annotator stores completions in sessions of its own
        first = annotator.annotate(project, texts, watermark=0)
        calls = db.scalars(select(LLMCall)).all()
        again = annotator.annotate(project, texts, watermark=0)
        n_calls = db.scalar(select(func.count()).select_from(LLMCall))
    assert len(first) == len(texts)
    assert n_calls == len(texts) == len(calls)
    for text, annotation in zip(texts, first, strict=True):
        for span in annotation.spans:
            assert text[span.start : span.end] == span.text
            assert span.label in conll_guide.labels
    assert all(c.prompt_tokens > 500 and c.completion_tokens > 0 and c.cost_usd > 0 for c in calls)
    assert all(a.cached for a in again)
    assert [a.spans for a in again] == [a.spans for a in first]
