"""Versioned model directories: ``<root>/<version>/`` with ``meta.json`` and the model under ``model/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ml.calibration import CalibratedModel, PlattCalibrator
from ml.errors import ModelError
from ml.prediction import NERModel

META_FILE = "meta.json"
MODEL_DIR = "model"
# one digest per training doc (``ml.training.warm_start.doc_digest``): a warm start counts the docs that are new
TRAIN_DOCS_FILE = "train_docs.txt"


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read a model version's meta (labels, guide hash, data fingerprint, settings, metrics, timestamps)."""
    meta_path = Path(path) / META_FILE
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
    except OSError:
        raise ModelError(
            f"{path}: not a nerloop model directory (no {META_FILE}); give the directory that `nerloop train` printed"
        ) from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{meta_path}: corrupt ({exc.msg})") from None
    return meta


def load_model(path: str | Path, *, calibrated: bool = True) -> NERModel:
    """Load a model version of either architecture.

    Args:
        path: The version directory.
        calibrated: Apply the calibration stored in the meta (raw scores otherwise).

    Returns:
        The model, ready to predict.
    """
    path = Path(path)
    meta = read_meta(path)
    architecture = meta.get("architecture")
    version = str(meta.get("version", path.name))
    model: NERModel
    if architecture in ("cnn", "spacy-transformer"):  # spaCy pipelines: a transition-based NER, beam confidences
        from ml.models.spacy_ner import SpacyNER

        model = SpacyNER.load(
            path / MODEL_DIR, version=version, beam_width=int(meta.get("settings", {}).get("beam_width", 16))
        )
    elif architecture in ("hf-transformer", "transformer"):  # "transformer": versions written before issue #14
        from ml.models.hf_tagger import HFTagger

        model = HFTagger.load(path / MODEL_DIR, version=version)
    else:
        raise ModelError(f"{path}: unknown architecture {architecture!r} in {META_FILE}")
    calibration = meta.get("calibration")
    if calibrated and isinstance(calibration, dict) and calibration.get("method") == "platt":
        return CalibratedModel(model, PlattCalibrator(float(calibration["slope"]), float(calibration["intercept"])))
    return model


def list_versions(root: str | Path) -> list[str]:
    """The model versions under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / META_FILE).is_file())
