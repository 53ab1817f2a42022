"""Train spaCy pipelines with spaCy's own training loop.

The CNN (tok2vec + transition-based NER) here, and the shared loop, logger and warm resume that
``ml.training.spacy_transformer`` uses too.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import spacy
from confection import Config
from spacy import util as spacy_util
from spacy.cli.init_config import init_config
from spacy.language import Language
from spacy.training.initialize import init_nlp
from spacy.training.loop import train as spacy_train

from ml.errors import TrainingError
from ml.training.progress import Progress, ProgressCallback, eta
from ml.training.settings import TrainSettings, eval_interval

log = logging.getLogger(__name__)
_CALLBACK: ContextVar[tuple[ProgressCallback, int] | None] = ContextVar("nerloop_progress", default=None)
LOGGER_NAME = "nerloop.ProgressLogger.v1"

# Hash-embedding rows for NORM, PREFIX, SUFFIX, SHAPE. spaCy's efficiency config has 5000, 1000, 2500, 2500;
# more rows mean fewer collisions among the ~21,000 lowercased word forms of CoNLL-2003's training split. There
# (bench/RESULTS.md) they gave test micro F1 0.804, 0.804, 0.799, 0.805 (seeds 0-3) against 0.798, 0.803, 0.791,
# 0.799; the cost is memory only (the lookup is the same).
EMBED_ROWS = (10000, 2500, 5000, 2500)

LogStep = Callable[[dict[str, Any] | None], None]
PACE_EVERY = 20  # steps between the progress reports that fall between two evaluations


@spacy_util.registry.loggers(LOGGER_NAME)  # type: ignore[untyped-decorator]
def progress_logger() -> Callable[..., tuple[LogStep, Callable[[], None]]]:
    """A spaCy training logger that forwards its reports to the active progress callback.

    It forwards each evaluation (with its dev F1) and, between them, every ``PACE_EVERY``-th step (the pace, for the
    ETA).
    """

    def setup(nlp: Language, stdout: Any = None, stderr: Any = None) -> tuple[LogStep, Callable[[], None]]:
        del nlp, stdout, stderr
        started = time.monotonic()
        active = _CALLBACK.get()
        last = [0]  # the last step spaCy evaluated; between evaluations it calls with None once per step

        def log_step(info: dict[str, Any] | None) -> None:
            if active is None:
                return
            callback, max_steps = active
            if info is None:  # a step without evaluation: the pace, every PACE_EVERY steps
                last[0] += 1
                if last[0] % PACE_EVERY == 0:
                    fraction, elapsed = min(1.0, last[0] / max_steps), time.monotonic() - started
                    callback(Progress("train", fraction, elapsed, eta(fraction, elapsed), step=last[0]))
                return
            last[0] = int(info["step"])
            fraction = min(1.0, info["step"] / max_steps)
            elapsed = time.monotonic() - started
            callback(
                Progress(
                    stage="train",
                    fraction=fraction,
                    elapsed_s=elapsed,
                    eta_s=eta(fraction, elapsed),
                    step=int(info["step"]),
                    loss=float(info["losses"].get("ner", 0.0)),
                    dev_f1=float(info["other_scores"].get("ents_f") or 0.0),
                )
            )

        return log_step, lambda: None

    return setup


@contextmanager
def _reporting(callback: ProgressCallback, max_steps: int) -> Iterator[None]:
    token = _CALLBACK.set((callback, max_steps))
    try:
        yield
    finally:
        _CALLBACK.reset(token)


def set_training(config: Config, settings: TrainSettings, *, train_path: Path, dev_path: Path, budget: int) -> None:
    """The part of any spaCy training config that nerloop sets.

    The data, the seed, the step budget, early stopping that never ends before ``min_steps``, evaluation often enough
    that the last stretch counts (spaCy keeps the best *evaluated* step), the dropout, the batch size when set
    (documents per step) and the progress logger.
    """
    config["paths"]["train"] = str(train_path)
    config["paths"]["dev"] = str(dev_path)
    config["system"]["seed"] = settings.seed
    training = config["training"]
    training.update(
        max_steps=budget,
        max_epochs=0,
        patience=max(settings.patience, settings.min_steps) if settings.patience else 0,
        eval_frequency=eval_interval(settings, budget),
        dropout=settings.dropout,
    )
    training["logger"] = {"@loggers": LOGGER_NAME}
    if settings.batch_size is not None:
        training["batcher"] = {
            "@batchers": "spacy.batch_by_sequence.v1",
            "size": settings.batch_size,
            "get_length": None,
        }


def build_config(settings: TrainSettings, *, train_path: Path, dev_path: Path) -> Config:
    """The spaCy training config: spaCy's own efficiency CNN for NER, with nerloop's choices on top."""
    config = init_config(lang="en", pipeline=["ner"], optimize="efficiency", gpu=False)
    set_training(config, settings, train_path=train_path, dev_path=dev_path, budget=settings.max_steps)
    if settings.learn_rate is not None:
        config["training"]["optimizer"]["learn_rate"] = settings.learn_rate
    tok2vec = config["components"]["tok2vec"]["model"]
    if settings.width is not None:
        tok2vec["embed"]["width"] = tok2vec["encode"]["width"] = settings.width
    if settings.depth is not None:
        tok2vec["encode"]["depth"] = settings.depth
    tok2vec["embed"]["rows"] = list(settings.embed_rows or EMBED_ROWS)
    if settings.vectors is not None:
        config["paths"]["vectors"] = settings.vectors
        config["components"]["tok2vec"]["model"]["embed"]["include_static_vectors"] = True
    if settings.init_tok2vec_from is not None:
        config["components"]["tok2vec"] = {"source": settings.init_tok2vec_from}
        config["nlp"]["pipeline"] = ["tok2vec", "ner"]
        config["components"]["ner"]["model"]["tok2vec"]["width"] = _sourced_width(settings.init_tok2vec_from)
    return config


def shrink_perturb(nlp: Language, *, shrink: float, noise: float, seed: int, keep: Sequence[str] = ()) -> int:
    """Scale every weight of ``nlp``'s trainable components by ``shrink`` and add Gaussian noise of s.d. ``noise``.

    Shrink and perturb (Ash and Adams, "On Warm-Starting Neural Network Training", NeurIPS 2020): a warm-started
    network keeps the serving version's solution but moves far enough from its minimum that training on the larger
    set generalises as a fresh start would. ``shrink=1, noise=0`` leaves the weights as they are.

    Args:
        nlp: The loaded pipeline (changed in place).
        shrink: The factor each weight is multiplied by, in (0, 1].
        noise: The standard deviation of the zero-mean Gaussian noise added to each weight (0: none).
        seed: Seeds the noise.
        keep: Component names left as they are (a pretrained encoder such as ``transformer``).

    Returns:
        The number of weights changed.
    """
    if shrink == 1.0 and noise == 0.0:
        return 0
    rng = np.random.default_rng(seed)
    changed = 0
    for name, component in nlp.components:
        model = getattr(component, "model", None)
        if name in keep or model is None:
            continue
        for node in model.walk():
            for param in node.param_names:
                if not node.has_param(param):
                    continue
                weights = node.ops.to_numpy(node.get_param(param))
                moved = shrink * weights + rng.normal(0.0, noise, weights.shape) if noise else shrink * weights
                node.set_param(param, node.ops.asarray(moved.astype(weights.dtype)))
                changed += weights.size
    return changed


def _resume(path: Path, config: Config, labels: Sequence[str], *, shrink: float = 1.0, noise: float = 0.0) -> Language:
    """A trained pipeline set up to train again under ``config``'s data, schedule and logger.

    A fresh optimizer (spaCy's loop builds it from the config; optimizer state is not saved with a pipeline). The
    weights are shrunk and perturbed first (``shrink_perturb``; a ``transformer`` component is kept as it is).
    """
    try:
        nlp = spacy.load(path)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load the serving pipeline {path} to start from ({exc})") from None
    resumed = nlp.config
    for section in ("paths", "system", "corpora", "training"):
        resumed[section] = config[section]
    nlp.config = resumed
    ner: Any = nlp.get_pipe("ner")
    added = [label for label in labels if ner.add_label(label)]
    if added:
        log.info("NER head resized for the new types %s", ", ".join(added))
    seed = int(config.interpolate()["training"]["seed"])
    if shrink_perturb(nlp, shrink=shrink, noise=noise, seed=seed, keep=("transformer",)):
        log.info("warm start: weights shrunk by %.2f and perturbed by noise of s.d. %g", shrink, noise)
    return nlp


def _sourced_width(name: str) -> int:
    try:
        source = spacy.load(name, exclude=["ner", "parser", "tagger", "lemmatizer", "attribute_ruler"])
    except OSError as exc:
        raise TrainingError(
            f"cannot load {name!r} to take its tok2vec from; install it or give a path ({exc})"
        ) from None
    if "tok2vec" not in source.pipe_names:
        raise TrainingError(f"{name!r} has no 'tok2vec' component to start from")
    tok2vec: Any = source.get_pipe("tok2vec")
    return int(tok2vec.model.get_dim("nO"))


def train_cnn(
    settings: TrainSettings,
    *,
    train_path: Path,
    dev_path: Path,
    output_dir: Path,
    on_progress: ProgressCallback,
    warm_from: Path | None = None,
    labels: Sequence[str] = (),
) -> Path:
    """Train on DocBin files; return the directory of the best pipeline (selected on dev F1).

    Args:
        settings: The training settings.
        train_path: DocBin with the training docs.
        dev_path: DocBin with the dev docs (model selection).
        output_dir: Where ``model-best`` and ``model-last`` are written.
        on_progress: Called after each evaluation.
        warm_from: A trained pipeline to resume (a warm start) instead of fresh weights (``nlp.initialize``).
        labels: Warm start: the types in the training docs; those its NER head lacks are added (head resized).

    Returns:
        The path of the best pipeline.
    """
    config = build_config(settings, train_path=train_path, dev_path=dev_path)
    return train_pipeline(
        config,
        output_dir=output_dir,
        on_progress=on_progress,
        warm_from=warm_from,
        labels=labels,
        refresh=(settings.warm_shrink, settings.warm_noise),
    )


def train_pipeline(
    config: Config,
    *,
    output_dir: Path,
    on_progress: ProgressCallback,
    warm_from: Path | None = None,
    labels: Sequence[str] = (),
    refresh: tuple[float, float] = (1.0, 0.0),
) -> Path:
    """Train a spaCy pipeline with spaCy's own loop (``spacy.training.loop.train``) from ``config``.

    The weights are fresh from ``nlp.initialize``, or ``warm_from``'s, shrunk and perturbed by ``refresh`` (the
    factor and the noise's s.d., ``shrink_perturb``). Returns the directory of the best pipeline (on dev F1).

    Raises:
        TrainingError: The warm source cannot be loaded, or spaCy wrote no model.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    with _reporting(on_progress, int(config["training"]["max_steps"])):
        if warm_from is None:
            nlp = init_nlp(config, use_gpu=-1)
        else:
            nlp = _resume(warm_from, config, labels, shrink=refresh[0], noise=refresh[1])
        spacy_train(nlp, output_dir, use_gpu=-1, stdout=io.StringIO(), stderr=io.StringIO())
    best = output_dir / "model-best"
    if not best.is_dir():
        raise TrainingError(f"spaCy training wrote no model to {best}")
    return best
