"""Step budgets that scale with the data and have a floor, and the flag on a model that predicts almost nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from spacy.language import Language
from spacy.tokens import Doc

from annotation_guide import Guide
from ml.converters import load_docs
from ml.evaluation import score_spans
from ml.prediction import ScoredSpan
from ml.training import Progress, TrainSettings, train
from ml.training.settings import concrete_architecture, step_budget
from ml.training.spacy_cnn import build_config
from ml.training.train import training_warnings

NERLOOP = str(Path(sys.executable).parent / "nerloop")
GUIDE = Path(__file__).resolve().parents[2] / "annotation_guide" / "guides" / "conll2003.yaml"


@pytest.fixture(scope="module")
def conll(shared_data: Path, conll_guide: Guide, blank_nlp: Language) -> tuple[list[Doc], list[Doc]]:
    folder = shared_data / "conll2003"
    train_docs = load_docs(folder / "train.txt", blank_nlp, labels=conll_guide.labels).docs[:400]
    dev_docs = load_docs(folder / "dev.txt", blank_nlp, labels=conll_guide.labels).docs[:60]
    return train_docs, dev_docs


@pytest.mark.parametrize(
    ("settings", "docs", "steps"),
    [
        (TrainSettings(architecture="hf-transformer"), 100, 300),  # 3 x 100 / 16 = 19 steps: the floor
        (TrainSettings(architecture="spacy-transformer"), 5000, 938),  # 3 passes of 5,000 docs, 16 a step
        (TrainSettings(architecture="transformer", max_steps=500), 5000, 500),  # the cap
        (TrainSettings(architecture="hf-transformer", min_steps=1000, max_steps=400), 10, 400),  # cap over floor
        (TrainSettings(architecture="hf-transformer", epochs=2, batch_size=8, min_steps=1), 100, 25),
        (TrainSettings(architecture="cnn", max_steps=700), 10, 700),  # spaCy's recipe: max_steps with patience
    ],
)
def test_step_budget_scales_with_the_data_within_floor_and_cap(settings: TrainSettings, docs: int, steps: int) -> None:
    assert step_budget(settings, docs) == steps


def test_transformer_names_the_default_transformer() -> None:
    assert concrete_architecture("transformer") in ("spacy-transformer", "hf-transformer")
    assert TrainSettings(architecture="transformer").concrete == concrete_architecture("transformer")
    with pytest.raises(ValueError, match="unknown architecture 'crf'"):
        concrete_architecture("crf")


def test_early_stopping_never_ends_before_the_floor(tmp_path: Path) -> None:
    config = build_config(
        TrainSettings(patience=100, min_steps=800), train_path=tmp_path / "t", dev_path=tmp_path / "d"
    )
    assert config["training"]["patience"] == 800
    assert build_config(TrainSettings(patience=0), train_path=tmp_path, dev_path=tmp_path)["training"]["patience"] == 0


def test_batch_size_and_learn_rate_reach_spacy(tmp_path: Path) -> None:
    config = build_config(
        TrainSettings(batch_size=32, learn_rate=0.002), train_path=tmp_path / "t", dev_path=tmp_path / "d"
    )
    assert config["training"]["batcher"] == {"@batchers": "spacy.batch_by_sequence.v1", "size": 32, "get_length": None}
    assert config["training"]["optimizer"]["learn_rate"] == 0.002


def test_a_tiny_set_trains_the_floor_number_of_steps(
    conll: tuple[list[Doc], list[Doc]], conll_guide: Guide, tmp_path: Path
) -> None:
    """Eight sentences at 3 epochs of 16 would be 2 steps; the floor makes it 12."""
    train_docs, dev_docs = conll
    seen: list[Progress] = []
    settings = TrainSettings(architecture="hf-transformer", min_steps=12)
    trained = train(
        train_docs[:8], dev_docs[:20], conll_guide, settings=settings, output_root=tmp_path, on_progress=seen.append
    )
    assert trained.initialisation.max_steps == 12
    # evaluated every 12 // 5 steps
    assert [p.step for p in seen if p.stage == "train" and p.dev_f1 is not None] == [2, 4, 6, 8, 10, 12]


def test_predicting_almost_nothing_is_flagged(conll: tuple[list[Doc], list[Doc]]) -> None:
    _, dev_docs = conll
    nothing = score_spans(dev_docs, [[] for _ in dev_docs])
    [warning] = training_warnings(nothing)
    gold = sum(len(d.ents) for d in dev_docs)
    assert warning.startswith(f"the model predicts almost nothing on dev: 0 spans for {gold} gold ones")
    gold_spans = [[ScoredSpan(e.start_char, e.end_char, e.label_, e.text, 1.0) for e in d.ents] for d in dev_docs]
    assert training_warnings(score_spans(dev_docs, gold_spans)) == []
    one_in_twenty = [spans[:1] if i % 20 == 0 else [] for i, spans in enumerate(gold_spans)]
    assert training_warnings(score_spans(dev_docs, one_in_twenty)) != []


def _sparse(docs: list[Doc]) -> list[Doc]:
    """Training docs that teach "no entity": one labelled sentence among many without any."""
    with_ents = [d for d in docs if d.ents][:1]
    return with_ents + [d for d in docs if not d.ents][:80]


def test_a_model_that_predicts_nothing_is_flagged_in_meta_and_cli(
    conll: tuple[list[Doc], list[Doc]], conll_guide: Guide, tmp_path: Path
) -> None:
    train_docs, dev_docs = conll
    sparse = _sparse(train_docs)
    settings = TrainSettings(max_steps=60, eval_frequency=20)
    trained = train(sparse, dev_docs, conll_guide, settings=settings, output_root=tmp_path / "models")
    assert trained.warnings
    assert trained.meta.warnings == trained.warnings
    assert "predicts almost nothing on dev" in trained.warnings[0]

    conll_file = tmp_path / "sparse.conll"
    conll_file.write_text("\n\n".join(_as_conll(d) for d in sparse) + "\n")
    dev_file = tmp_path / "dev.conll"
    dev_file.write_text("\n\n".join(_as_conll(d) for d in dev_docs) + "\n")
    run = subprocess.run(
        [
            *(NERLOOP, "train", "--guide", str(GUIDE), "--train", str(conll_file), "--dev", str(dev_file)),
            *("--max-steps", "60", "--output", str(tmp_path / "cli-models")),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "warning: the model predicts almost nothing on dev" in run.stderr


def _as_conll(doc: Doc) -> str:
    return "\n".join(
        f"{t.text}\t{t.ent_iob_}-{t.ent_type_}" if t.ent_iob_ in ("B", "I") else f"{t.text}\tO" for t in doc
    )
