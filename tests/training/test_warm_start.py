"""Warm start: real CNN trainings on small CoNLL-2003 slices that resume the serving version, or refuse to."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc

from annotation_guide import Guide
from ml.converters import load_docs
from ml.model_store import META_FILE, MODEL_DIR, TRAIN_DOCS_FILE, load_model
from ml.training import Progress, TrainedModel, TrainSettings, train
from ml.training.warm_start import doc_digest, plan_initialisation, warm_budget

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def conll(shared_data: Path, conll_guide: Guide, blank_nlp: Language) -> tuple[list[Doc], list[Doc]]:
    """The first 600 training sentences and the first 200 dev sentences (``small_model`` trained on 400 / 200)."""
    folder = shared_data / "conll2003"
    return (
        load_docs(folder / "train.txt", blank_nlp, labels=conll_guide.labels).docs[:600],
        load_docs(folder / "dev.txt", blank_nlp, labels=conll_guide.labels).docs[:200],
    )


def _first_eval(seen: list[Progress]) -> Progress:
    return next(p for p in seen if p.stage == "train")


def test_warm_candidate_starts_from_the_serving_weights_with_the_smaller_budget(
    small_model: TrainedModel, conll: tuple[list[Doc], list[Doc]], conll_guide: Guide, tmp_path: Path
) -> None:
    train_docs, dev_docs = conll
    known = set((small_model.path / TRAIN_DOCS_FILE).read_text().split())
    new = sum(doc_digest(d) not in known for d in train_docs)
    assert 150 <= new <= 200  # the 200 sentences after the serving version's 400 (CoNLL repeats a few)
    settings = TrainSettings(max_steps=400, eval_frequency=100, warm_min_steps=20, warm_steps_per_new_doc=0.25)
    seen: list[Progress] = []
    trained = train(
        train_docs,
        dev_docs,
        conll_guide,
        settings=settings,
        output_root=tmp_path,
        on_progress=seen.append,
        warm_from=small_model.path,
    )
    init = trained.initialisation
    assert init.mode == "warm"
    assert init.source_version == small_model.version
    assert init.new_docs == new
    assert init.max_steps == warm_budget(settings, new) < 400
    assert warm_budget(settings, new) - 5 < new / 4 <= warm_budget(settings, new)  # a multiple of 5: evaluated
    assert init.warm_chain == 1
    assert init.added_labels == ()
    assert [p.step for p in seen if p.stage == "train"][-1] == init.max_steps
    serving_f1 = small_model.dev_report.micro.f1
    assert serving_f1 > 0.3, serving_f1
    # spaCy evaluates after its first update: from the serving weights, not from scratch (a cold start scores ~0)
    assert _first_eval(seen).dev_f1 is not None
    assert _first_eval(seen).dev_f1 > serving_f1 - 0.1
    assert trained.dev_report.micro.f1 >= serving_f1 - 0.05
    # the new version stores its own digests: the next warm start counts from here
    assert len((trained.path / TRAIN_DOCS_FILE).read_text().split()) == len(train_docs)
    again = plan_initialisation(settings, source=trained.path, train_docs=train_docs, labels=conll_guide.labels)
    assert (again.mode, again.new_docs, again.max_steps, again.warm_chain) == ("warm", 0, 20, 2)


def test_a_bulk_of_new_labels_starts_cold_and_says_why(
    small_model: TrainedModel, conll: tuple[list[Doc], list[Doc]], conll_guide: Guide
) -> None:
    train_docs, _ = conll
    settings = TrainSettings(max_steps=400, eval_frequency=100)
    known = set((small_model.path / TRAIN_DOCS_FILE).read_text().split())
    new_in = [d for d in train_docs if doc_digest(d) not in known]
    old_in = [d for d in train_docs if doc_digest(d) in known]
    # half new (the boundary): still warm; one more new doc than the share allows: cold, with the counts
    half = old_in[:100] + new_in[:100]
    plan = plan_initialisation(settings, source=small_model.path, train_docs=half, labels=conll_guide.labels)
    assert (plan.mode, plan.new_docs) == ("warm", 100)
    bulk = old_in[:99] + new_in[:101]
    plan = plan_initialisation(settings, source=small_model.path, train_docs=bulk, labels=conll_guide.labels)
    assert (plan.mode, plan.new_docs, plan.max_steps) == ("cold", 101, 400)
    assert plan.reason == "101 of the 200 training docs are new (more than 50%): a bulk of new labels trains cold"
    assert plan.source_version == small_model.version
    # the share is a setting: 1 never refuses for it
    anyway = settings.model_copy(update={"warm_max_new_share": 1.0})
    everything_new = plan_initialisation(anyway, source=small_model.path, train_docs=new_in, labels=conll_guide.labels)
    assert (everything_new.mode, everything_new.new_docs) == ("warm", len(new_in))


def _copy_with_meta(source: Path, target: Path, **changes: object) -> Path:
    shutil.copytree(source, target)
    meta = json.loads((target / META_FILE).read_text())
    meta.update(changes)
    (target / META_FILE).write_text(json.dumps(meta))
    return target


def test_a_serving_version_with_other_types_gives_a_cold_start_and_says_why(
    small_model: TrainedModel,
    conll: tuple[list[Doc], list[Doc]],
    conll_guide: Guide,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    train_docs, dev_docs = conll
    other = _copy_with_meta(small_model.path, tmp_path / "other", labels=[*conll_guide.labels, "product"])
    seen: list[Progress] = []
    with caplog.at_level(logging.INFO, logger="ml.training"):
        trained = train(
            train_docs[:200],
            dev_docs[:60],
            conll_guide,
            settings=TrainSettings(max_steps=20, eval_frequency=10),
            output_root=tmp_path / "models",
            on_progress=seen.append,
            warm_from=other,
        )
    init = trained.initialisation
    assert init.mode == "cold"
    assert init.max_steps == 20
    assert init.warm_chain == 0
    assert init.reason == "the guide no longer has the serving version's types product"
    assert any("cold start: the guide no longer has" in r.getMessage() for r in caplog.records)
    first = _first_eval(seen).dev_f1
    # fresh weights
    assert first is not None
    assert first < 0.1


@pytest.mark.parametrize(
    ("changes", "settings", "reason"),
    [
        ({}, TrainSettings(width=64), "the serving version has width=None, this training 64"),
        # "transformer" in a version written before issue #14 is the Hugging Face token classifier
        ({"architecture": "transformer"}, TrainSettings(), "the serving version has architecture='hf-transformer'"),
        (
            {"architecture": "spacy-transformer"},
            TrainSettings(),
            "the serving version has architecture='spacy-transformer', this training 'cnn'",
        ),
        ({"spacy_version": "3.7.5"}, TrainSettings(), "trained with spaCy 3.7.5"),
        (
            {"initialisation": {"mode": "warm", "reason": "from v0", "max_steps": 300, "warm_chain": 4}},
            TrainSettings(cold_every=5),
            "drift guard: every 5th retrain",
        ),
        ({}, TrainSettings(warm_start=False), "warm starts are off"),
    ],
)
def test_incompatible_or_due_serving_versions_are_not_resumed(
    small_model: TrainedModel,
    conll: tuple[list[Doc], list[Doc]],
    conll_guide: Guide,
    tmp_path: Path,
    changes: dict[str, object],
    settings: TrainSettings,
    reason: str,
) -> None:
    changed = _copy_with_meta(small_model.path, tmp_path / "v", **changes)
    if "architecture" in changes:
        meta = json.loads((changed / META_FILE).read_text())
        meta["settings"]["architecture"] = "transformer"
        (changed / META_FILE).write_text(json.dumps(meta))
    plan = plan_initialisation(settings, source=changed, train_docs=conll[0], labels=conll_guide.labels)
    assert plan.mode == "cold"
    assert reason in plan.reason
    assert plan.max_steps == settings.max_steps


def test_a_type_the_serving_head_lacks_resizes_the_head(
    conll: tuple[list[Doc], list[Doc]], conll_guide: Guide, blank_nlp: Language, tmp_path: Path
) -> None:
    train_docs, dev_docs = conll
    without_misc = [_without(d, "misc") for d in train_docs[:150]]
    settings = TrainSettings(max_steps=30, eval_frequency=10, warm_min_steps=30)
    serving = train(without_misc, dev_docs[:60], conll_guide, settings=settings, output_root=tmp_path)
    assert "misc" not in _ner_labels(serving.path)
    trained = train(
        train_docs[:150], dev_docs[:60], conll_guide, settings=settings, output_root=tmp_path, warm_from=serving.path
    )
    init = trained.initialisation
    assert init.mode == "warm"
    assert init.added_labels == ("misc",)
    assert "NER head resized" in init.reason
    assert set(_ner_labels(trained.path)) == set(conll_guide.labels)
    assert "misc" in load_model(trained.path).labels


def _without(doc: Doc, label: str) -> Doc:
    copy = doc.copy()
    copy.ents = [e for e in doc.ents if e.label_ != label]
    return copy


def _ner_labels(version: Path) -> tuple[str, ...]:
    labels: tuple[str, ...] = spacy.load(version / MODEL_DIR).get_pipe("ner").labels
    return labels


def test_a_transformer_resumes_its_serving_version_for_the_warm_budget(
    conll: tuple[list[Doc], list[Doc]], conll_guide: Guide, tmp_path: Path
) -> None:
    train_docs, dev_docs = conll
    settings = TrainSettings(architecture="hf-transformer", epochs=2, batch_size=16, min_steps=1, warm_min_steps=2)
    serving = train(train_docs[:48], dev_docs[:30], conll_guide, settings=settings, output_root=tmp_path)
    assert serving.initialisation.mode == "cold"
    seen: list[Progress] = []
    trained = train(
        train_docs[:96],
        dev_docs[:30],
        conll_guide,
        settings=settings.model_copy(update={"warm_steps_per_new_doc": 0.05}),
        output_root=tmp_path,
        on_progress=seen.append,
        warm_from=serving.path,
    )
    init = trained.initialisation
    # 48 new docs x 0.05, rounded up to 5; cold: 12
    assert init.mode == "warm"
    assert init.max_steps == 5
    assert [p.step for p in seen if p.stage == "train" and p.dev_f1 is not None] == [1, 2, 3, 4, 5]
    assert sorted(load_model(trained.path).labels) == sorted(conll_guide.labels)


def test_shrink_and_perturb_scales_the_serving_weights_and_leaves_kept_components(small_model: TrainedModel) -> None:
    from ml.training.spacy_cnn import shrink_perturb

    def weights(nlp: Language) -> dict[str, np.ndarray]:
        return {
            f"{name}/{node.id}/{param}": node.ops.to_numpy(node.get_param(param)).copy()
            for name, component in nlp.components
            for node in component.model.walk()
            for param in node.param_names
            if node.has_param(param)
        }

    nlp = spacy.load(small_model.path / MODEL_DIR)
    before = weights(nlp)
    assert shrink_perturb(nlp, shrink=1.0, noise=0.0, seed=0) == 0
    assert all(np.array_equal(before[k], v) for k, v in weights(nlp).items())

    changed = shrink_perturb(nlp, shrink=0.5, noise=0.0, seed=0, keep=("tok2vec",))
    after = weights(nlp)
    assert changed == sum(v.size for k, v in before.items() if not k.startswith("tok2vec/")) > 0
    for key, value in after.items():
        expected = before[key] if key.startswith("tok2vec/") else 0.5 * before[key]
        np.testing.assert_allclose(value, expected, rtol=1e-6)

    shrink_perturb(nlp, shrink=1.0, noise=0.01, seed=3)
    moved = np.concatenate([(weights(nlp)[k] - after[k]).ravel() for k in after if not k.startswith("tok2vec/")])
    assert 0.009 < moved.std() < 0.011
    assert abs(moved.mean()) < 0.001


def test_a_warm_start_shrinks_and_perturbs_the_serving_weights_when_set(
    small_model: TrainedModel,
    conll: tuple[list[Doc], list[Doc]],
    conll_guide: Guide,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    train_docs, dev_docs = conll
    settings = TrainSettings(
        max_steps=400, eval_frequency=100, warm_min_steps=20, warm_steps_per_new_doc=0.0, warm_shrink=0.3
    )
    with caplog.at_level(logging.INFO, logger="ml.training.spacy_cnn"):
        trained = train(
            train_docs, dev_docs, conll_guide, settings=settings, output_root=tmp_path, warm_from=small_model.path
        )
    assert trained.initialisation.mode == "warm"
    assert trained.initialisation.reason.endswith("; weights shrunk by 0.3, noise s.d. 0")
    assert "weights shrunk by 0.30 and perturbed by noise of s.d. 0" in caplog.text
