"""The spaCy transformer pipeline (spacy-transformers' MiniLM + spaCy's NER), trained on a CoNLL-2003 slice.

Trained for real: beam confidences in [0, 1], calibrated when saved, the same predictions after a reload.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc

from annotation_guide import Guide
from ml.converters import load_docs
from ml.model_store import load_model, read_meta
from ml.training import Progress, TrainedModel, TrainSettings, train
from ml.training.spacy_transformer import default_encoder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def conll(shared_data: Path, conll_guide: Guide, blank_nlp: Language) -> tuple[list[Doc], list[Doc]]:
    folder = shared_data / "conll2003"
    train_docs = load_docs(folder / "train.txt", blank_nlp, labels=conll_guide.labels).docs[:240]
    dev_docs = load_docs(folder / "dev.txt", blank_nlp, labels=conll_guide.labels).docs[:80]
    return train_docs, dev_docs


@pytest.fixture(scope="module")
def trained(
    conll: tuple[list[Doc], list[Doc]], conll_guide: Guide, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainedModel, list[Progress]]:
    seen: list[Progress] = []
    settings = TrainSettings(architecture="spacy-transformer", max_steps=40, min_steps=1, learn_rate=2e-4)
    model = train(
        *conll, conll_guide, settings=settings, output_root=tmp_path_factory.mktemp("models"), on_progress=seen.append
    )
    return model, seen


def test_the_pipeline_is_minilm_through_spacy_transformers(trained: tuple[TrainedModel, list[Progress]]) -> None:
    model, seen = trained
    meta = read_meta(model.path)
    assert meta.architecture == "spacy-transformer"
    assert "-spacy-transformer-" in model.version
    nlp = spacy.load(model.path / "model")
    assert nlp.pipe_names == ["transformer", "ner"]
    config = nlp.config.interpolate()
    assert config["components"]["transformer"]["model"]["name"] == default_encoder()  # local: nothing downloaded
    assert config["training"]["max_steps"] == 40 == meta.initialisation.max_steps
    assert [p.step for p in seen if p.stage == "train" and p.dev_f1 is not None] == [0, 8, 16, 24, 32, 40]  # 40 // 5
    assert seen[-1].stage == "evaluate"
    assert seen[-1].fraction == 1.0


def test_confidences_are_probabilities_and_calibrated_at_save(
    trained: tuple[TrainedModel, list[Progress]], conll: tuple[list[Doc], list[Doc]]
) -> None:
    model, _ = trained
    assert read_meta(model.path).calibration.method == "platt"
    assert model.dev_report.micro.f1 > 0.2, model.dev_report.micro  # it learnt something in 40 steps
    assert model.dev_report.ece is not None
    docs = conll[1]
    raw = load_model(model.path, calibrated=False).predict(docs)
    calibrated = load_model(model.path).predict(docs)
    scores = [s.score for spans in calibrated for s in spans]
    assert scores
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert len(set(scores)) > 10
    assert [[(s.start, s.end, s.label) for s in d] for d in raw] == [
        [(s.start, s.end, s.label) for s in d] for d in calibrated
    ]
    assert [s.score for d in raw for s in d] != scores
    for doc, spans in zip(docs, calibrated, strict=True):
        assert all(doc.text[s.start : s.end] == s.text for s in spans)


def test_a_reload_predicts_the_same(
    trained: tuple[TrainedModel, list[Progress]], conll: tuple[list[Doc], list[Doc]]
) -> None:
    docs = conll[1][:50]
    first = load_model(trained[0].path).predict(docs)
    again = load_model(trained[0].path).predict(docs)
    assert first == again
    assert any(first)
