"""ModelMeta: one validated type for meta.json and the stored metrics, old files included."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ml.errors import ModelError
from ml.evaluation import PRF, EvaluationReport, TypeScore
from ml.model_meta import CalibrationMeta, Initialisation, ModelMeta, ModelMetrics
from ml.model_store import read_meta, write_meta
from ml.routing import compute_routes
from ml.sampling import type_weights_from_f1


def _type(label: str, f1: float, support: int, **extra: Any) -> dict[str, Any]:
    return {
        "label": label,
        "precision": f1,
        "recall": f1,
        "f1": f1,
        "partial_f1": f1,
        "support": support,
        "predicted": support,
        "meets_target": f1 >= 0.85,
        **extra,
    }


def _metrics(**per_type: dict[str, Any]) -> dict[str, Any]:
    return {
        "per_type": per_type,
        "micro": {"precision": 0.8, "recall": 0.7, "f1": 0.75},
        "macro": {"precision": 0.8, "recall": 0.7, "f1": 0.74},
        "partial_micro_f1": 0.8,
        "ece": 0.05,
        "n_docs": 40,
        "target_f1": 0.85,
        "calibration_bins": [{"lower": 0.0, "upper": 0.1, "confidence": 0.05, "accuracy": 0.0, "count": 3.0}],
    }


# the shape the first release wrote (cfe3cc8): no initialisation, dev metrics, warnings, per-type training counts,
# calibration fit size, evaluated_on, F1 interval or measurability
OLD_META: dict[str, Any] = {
    "version": "20261128T141417Z-cnn-1a2b3c4d",
    "architecture": "cnn",
    "labels": ["person", "location"],
    "guide": {"project": "conll2003", "sha256": "ab" * 32, "target_f1": 0.85},
    "data": {
        "train_fingerprint": "cd" * 32,
        "dev_fingerprint": "ef" * 32,
        "train_docs": 20,
        "dev_docs": 5,
        "train_entities": 31,
    },
    "settings": {"architecture": "cnn", "max_steps": 300, "beam_width": 8},
    "spacy_version": "3.8.7",
    "started_at": "2026-11-28T14:14:17.123456+00:00",
    "calibration": {"method": "platt", "slope": 0.9, "intercept": -0.1},
    "metrics": _metrics(person=_type("person", 0.9, 12), location=_type("location", 0.0, 0)),
    "finished_at": "2026-11-28T14:15:01.000001+00:00",
    "training_seconds": 43.9,
}


def _current() -> dict[str, Any]:
    meta = json.loads(json.dumps(OLD_META))
    meta["data"] |= {"train_entities_per_type": {"person": 20, "location": 11}, "test_docs": 8}
    meta["initialisation"] = Initialisation("cold", "no serving version to start from", 300).to_dict()
    meta["calibration"]["fitted_on"] = 120
    per_type = {"person": _type("person", 0.9, 12, f1_interval=[0.8, 0.95], measurable=True)}
    meta["metrics"] = {**_metrics(**per_type), "micro_f1_interval": [0.7, 0.8], "evaluated_on": "test"}
    meta["dev_metrics"] = _metrics(**per_type)
    meta["warnings"] = []
    return meta


def test_round_trip_through_the_file_keeps_every_field(tmp_path: Path) -> None:
    written = _current()
    meta = ModelMeta.from_dict(written, source="meta.json")
    write_meta(tmp_path, meta)
    again = read_meta(tmp_path)
    assert again == meta
    assert json.loads((tmp_path / "meta.json").read_text()) == written  # the same JSON: timestamps, nulls, lists
    assert again.initialisation == Initialisation("cold", "no serving version to start from", 300)
    assert again.metrics is not None
    assert again.metrics.evaluated_on == "test"
    assert again.metrics.per_type["person"].f1_interval == (0.8, 0.95)
    assert again.started_at == datetime(2026, 11, 28, 14, 14, 17, 123456, tzinfo=UTC)


def test_an_old_meta_loads_with_its_defaults_and_keeps_its_shape(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text(json.dumps(OLD_META))
    meta = read_meta(tmp_path)
    assert meta.initialisation is None
    assert meta.dev_metrics is None
    assert meta.warnings == ()
    assert meta.data is not None
    assert meta.data.train_entities_per_type is None
    assert meta.data.test_docs is None
    assert meta.metrics is not None
    assert meta.metrics.evaluated_on == "dev"  # before the held-out test half
    assert meta.metrics.per_type["person"].measurable
    assert meta.metrics.per_type["person"].f1_interval is None
    assert meta.calibration == CalibrationMeta(method="platt", slope=0.9, intercept=-0.1)
    assert meta.beam_width == 8
    assert meta.to_dict()["calibration"] == OLD_META["calibration"]  # no default written into an old file
    assert "evaluated_on" not in meta.to_dict()["metrics"]
    assert "initialisation" not in meta.to_dict()


def test_a_meta_without_version_takes_the_directory_name(tmp_path: Path) -> None:
    version = tmp_path / "v7"
    version.mkdir()
    (version / "meta.json").write_text(json.dumps({"architecture": "cnn"}))
    meta = read_meta(version)
    assert meta.version == "v7"
    assert meta.labels == ()
    assert meta.metrics is None
    assert meta.beam_width == 16


def test_a_malformed_meta_names_the_file_and_the_field(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(OLD_META))
    bad["metrics"]["per_type"]["person"]["f1"] = "high"
    (tmp_path / "meta.json").write_text(json.dumps(bad))
    with pytest.raises(ModelError, match=r"meta\.json: invalid meta \(metrics\.per_type\.person\.f1: .*number"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"version": "v1"}))
    with pytest.raises(ModelError, match=r"architecture: Field required.*retrain the version"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="not a JSON object"):
        read_meta(tmp_path)


def test_stored_metrics_name_their_source() -> None:
    with pytest.raises(ModelError, match=r"model version v3: invalid metrics \(micro: Field required"):
        ModelMetrics.from_dict({k: v for k, v in _metrics().items() if k != "micro"}, source="model version v3")


def test_a_type_without_support_has_no_f1_not_zero() -> None:
    metrics = ModelMetrics.from_dict(
        _metrics(person=_type("person", 0.9, 12), location=_type("location", 0.0, 0)), source="test"
    )
    assert metrics.measured_f1() == {"person": 0.9}
    assert metrics.measured_f1().get("location") is None
    assert metrics.measured_f1().get("misc") is None
    assert metrics.measured_f1().get("person") == 0.9
    # every reader gets the same answer: routing shows "not measured" (None), sampling adds no weight
    routes = compute_routes(["person", "location"], per_type_f1=metrics.measured_f1(), target_f1=0.85)
    assert routes["location"].f1 is None
    assert routes["location"].route == "llm"
    assert routes["person"].f1 == 0.9
    assert routes["person"].route == "model"
    assert "location" not in type_weights_from_f1(metrics.measured_f1())


def test_metrics_of_a_report_round_trip() -> None:
    score = TypeScore("person", 0.5, 0.5, 0.5, 0.6, 4, 4, False, (0.2, 0.8), measurable=False)
    report = EvaluationReport({"person": score}, PRF(0.5, 0.5, 0.5), PRF(0.5, 0.5, 0.5), 0.6, None, 3, 0.85)
    metrics = ModelMetrics.of(report, evaluated_on="test")
    assert metrics.per_type["person"] == score
    assert metrics.evaluated_on == "test"
    assert metrics.to_dict() == {**json.loads(json.dumps(report.to_dict())), "evaluated_on": "test"}
    assert "evaluated_on" not in ModelMetrics.of(report).to_dict()  # as a version's dev_metrics
    stored = metrics.replace(train_labels={"person": 20})
    assert ModelMetrics.from_dict(stored.to_dict(), source="db") == stored


def test_the_calibration_record_gives_the_curve_or_the_prior() -> None:
    assert CalibrationMeta(method="platt", slope=2.0, intercept=0.5).calibrator() is not None
    prior = CalibrationMeta.model_validate({"method": "prior (identity: too few dev spans to fit)"})
    assert prior.calibrator() is None


def test_measurable_f1_needs_support_and_the_minimum() -> None:
    metrics = ModelMetrics.from_dict(
        _metrics(
            person=_type("person", 0.9, 12),
            location=_type("location", 0.0, 0, measurable=True),  # min_support 0: "measurable", yet no span
            misc=_type("misc", 1.0, 3, measurable=False),
        ),
        source="test",
    )
    assert metrics.measurable_f1("person") == 0.9
    assert metrics.measurable_f1("location") is None
    assert metrics.measurable_f1("misc") is None
    assert metrics.measured_f1().get("misc") == 1.0  # measured (routing reads it), only not yet measurable
