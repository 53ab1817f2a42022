"""Versioned model directories: ``<root>/<version>/`` with ``meta.json`` and the model under ``model/``."""

from __future__ import annotations

import json
from pathlib import Path

from ml.calibration import CalibratedModel
from ml.errors import ModelError
from ml.model_meta import ModelMeta
from ml.prediction import NERModel

META_FILE = "meta.json"
MODEL_DIR = "model"
# one digest per training doc (``ml.training.warm_start.doc_digest``): a warm start counts the docs that are new
TRAIN_DOCS_FILE = "train_docs.txt"


def read_meta(path: str | Path) -> ModelMeta:
    """Read a model version's meta (labels, guide hash, data fingerprint, settings, metrics, timestamps).

    A meta without ``version`` (none was ever written so) takes the directory's name.

    Raises:
        ModelError: No ``meta.json``, not JSON, or a field of the wrong type (the message names the file and field).
    """
    meta_path = Path(path) / META_FILE
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except OSError:
        raise ModelError(
            f"{path}: not a nerloop model directory (no {META_FILE}); give the directory that `nerloop train` printed"
        ) from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{meta_path}: corrupt ({exc.msg})") from None
    if isinstance(data, dict):
        data.setdefault("version", Path(path).name)
    return ModelMeta.from_dict(data, source=meta_path)


def write_meta(path: str | Path, meta: ModelMeta) -> None:
    """Write a version's ``meta.json`` (``ModelMeta.to_dict``, indented) into the directory ``path``."""
    (Path(path) / META_FILE).write_text(json.dumps(meta.to_dict(), indent=2), encoding="utf-8")


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
    architecture = meta.architecture
    version = meta.version
    model: NERModel
    if architecture in ("cnn", "spacy-transformer"):  # spaCy pipelines: a transition-based NER, beam confidences
        from ml.models.spacy_ner import SpacyNER

        model = SpacyNER.load(path / MODEL_DIR, version=version, beam_width=meta.beam_width)
    elif architecture in ("hf-transformer", "transformer"):  # "transformer": versions written before issue #14
        from ml.models.hf_tagger import HFTagger

        model = HFTagger.load(path / MODEL_DIR, version=version)
    else:
        raise ModelError(f"{path}: unknown architecture {architecture!r} in {META_FILE}")
    calibrator = meta.calibration.calibrator() if meta.calibration is not None else None
    if calibrated and calibrator is not None:
        return CalibratedModel(model, calibrator)
    return model


def list_versions(root: str | Path) -> list[str]:
    """The model versions under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / META_FILE).is_file())
