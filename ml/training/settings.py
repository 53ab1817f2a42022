"""Training settings: one validated model, stored in every model's meta.

Budgets are optimizer steps for every architecture (``step_budget``): a step count that scales with the data
(``epochs`` passes of ``batch_size`` documents), never fewer than ``min_steps`` however small the data and never more
than ``max_steps``. Counted in epochs alone, 100 sentences at 3 epochs of 16 gave a transformer 21 steps and a model
that predicted nothing (issue #14).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# ``transformer`` names whichever transformer pipeline is the default (DEFAULT_TRANSFORMER): the one that scores
# better in bench/train_conll.py (README, "Models"; bench/RESULTS.md): the token classifier, level with the spaCy
# pipeline on 2,000 CoNLL-2003 sentences (test micro F1 0.769 vs 0.776) and ahead on a 100-sentence domain corpus
# (CrossNER ai, two seeds: 0.444 and 0.433 vs 0.352 and 0.350), in two thirds of the training time. The other two are
# the concrete pipelines:
#   spacy-transformer: spacy-transformers' ``transformer`` component (MiniLM) and spaCy's transition-based NER on
#       it, trained by spaCy's own loop; entity confidences from the beam, like the CNN's;
#   hf-transformer: a Hugging Face token classifier (BIO tags) fine-tuned by a plain PyTorch loop.
Architecture = Literal["cnn", "transformer", "spacy-transformer", "hf-transformer"]
ConcreteArchitecture = Literal["cnn", "spacy-transformer", "hf-transformer"]
ARCHITECTURES: tuple[str, ...] = ("cnn", "transformer", "spacy-transformer", "hf-transformer")
DEFAULT_TRANSFORMER: ConcreteArchitecture = "hf-transformer"
# spaCy pipelines (a ``ner`` component decoded with the beam; ``spacy.load`` reads them)
SPACY_ARCHITECTURES = ("cnn", "spacy-transformer")


def concrete_architecture(name: str) -> ConcreteArchitecture:
    """The pipeline an architecture name trains: ``transformer`` is ``DEFAULT_TRANSFORMER``.

    Raises:
        ValueError: An unknown name.
    """
    concrete: dict[str, ConcreteArchitecture] = {
        "transformer": DEFAULT_TRANSFORMER,
        "cnn": "cnn",
        "spacy-transformer": "spacy-transformer",
        "hf-transformer": "hf-transformer",
    }
    if name in concrete:
        return concrete[name]
    raise ValueError(f"unknown architecture {name!r}; one of {', '.join(ARCHITECTURES)}")


class TrainSettings(BaseModel):
    """Everything that decides how a model is trained."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: Architecture = "cnn"
    init_tok2vec_from: str | None = Field(
        default=None, description="spaCy pipeline (package or path) whose trained tok2vec the CNN starts from"
    )
    vectors: str | None = Field(default=None, description="spaCy pipeline (package or path) with static vectors")
    transformer: str | None = Field(default=None, description="Hugging Face model directory; MiniLM by default")
    width: int | None = Field(default=None, ge=8, description="CNN: tok2vec width (None: spaCy's efficiency 96)")
    depth: int | None = Field(default=None, ge=1, description="CNN: tok2vec CNN layers (None: spaCy's efficiency 4)")
    embed_rows: tuple[int, int, int, int] | None = Field(
        default=None, description="CNN: hash rows for NORM, PREFIX, SUFFIX, SHAPE (None: 10000,2500,5000,2500)"
    )
    max_steps: int = Field(default=6000, ge=1, description="the most optimizer steps of a cold start")
    min_steps: int = Field(
        default=300,
        ge=1,
        description="the fewest optimizer steps however small the data (at most max_steps); early stopping "
        "(patience) never ends a training before it",
    )
    patience: int = Field(default=1600, ge=0, description="stop after this many steps without a better dev F1")
    eval_frequency: int = Field(default=200, ge=1)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    learn_rate: float | None = Field(
        default=None,
        gt=0.0,
        description="peak learning rate (None: the architecture's: CNN 0.001 (spaCy's Adam), transformers 1e-4 "
        "with a warm-up over the first tenth of the budget, then a linear decay to 0)",
    )
    epochs: float = Field(
        default=3.0,
        gt=0.0,
        description="transformers: passes over the training data that set the step budget, within min_steps and "
        "max_steps (the CNN trains max_steps steps with patience, spaCy's recipe)",
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="documents per optimizer step (None: the architecture's: CNN spaCy's compounding 100-1000 words, "
        "transformers 16)",
    )
    doc_group: int = Field(
        default=1,
        ge=1,
        description="spaCy pipelines: consecutive training docs joined into one document of this many (spaCy's "
        "`convert -n`); the dev docs stay as they are",
    )
    beam_width: int = Field(default=16, ge=2, description="spaCy NER: beam width that gives entity probabilities")
    seed: int = 0
    warm_start: bool = Field(
        default=True, description="start from the serving version's weights when one is given and compatible"
    )
    warm_min_steps: int = Field(
        default=300, ge=1, description="warm start: the fewest steps, however few labels are new"
    )
    warm_steps_per_new_doc: float = Field(
        default=0.5, ge=0.0, description="warm start: steps per training doc the serving version was not trained on"
    )
    warm_shrink: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="warm start of a spaCy pipeline: the serving weights are multiplied by this before training "
        "(shrink and perturb, Ash and Adams 2020; 1: kept as they are; a pretrained transformer encoder is never "
        "shrunk, and hf-transformer, a pretrained encoder under one linear layer, keeps its weights)",
    )
    warm_noise: float = Field(
        default=0.0, ge=0.0, description="warm start: s.d. of the Gaussian noise added to the shrunk weights"
    )
    cold_every: int = Field(
        default=10, ge=0, description="drift guard: every Nth retrain in a row starts cold (0: never forced, 1: always)"
    )
    warm_max_new_share: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="warm start only while the training docs the serving version was not trained on are at most this "
        "share of them: a bulk of new labels starts cold, which generalises better (Ash and Adams 2020; a plain warm "
        "start from 200 to 1,000 labels lost 0.017 test F1, bench/RESULTS.md); 1: never cold for this reason",
    )

    @model_validator(mode="after")
    def _one_tok2vec(self) -> TrainSettings:
        shaped = [n for n in ("width", "depth", "embed_rows") if getattr(self, n) is not None]
        if shaped and self.init_tok2vec_from is not None:
            names = ", ".join(shaped)
            raise ValueError(f"{names} cannot be set with init_tok2vec_from: the sourced tok2vec has its own")
        return self

    @property
    def concrete(self) -> ConcreteArchitecture:
        """The pipeline this trains (``transformer`` resolved)."""
        return concrete_architecture(self.architecture)

    @property
    def docs_per_step(self) -> int:
        """Documents per optimizer step of the transformers (``batch_size`` or 16)."""
        return self.batch_size or TRANSFORMER_BATCH_SIZE


TRANSFORMER_BATCH_SIZE = 16


def step_budget(settings: TrainSettings, n_train_docs: int) -> int:
    """The optimizer steps of a cold start on ``n_train_docs`` documents.

    CNN: ``max_steps`` (spaCy's recipe: a step budget with early stopping, batches by words). Transformers:
    ``epochs`` passes of ``docs_per_step`` documents, at least ``min_steps`` and at most ``max_steps``.

    Args:
        settings: The training settings.
        n_train_docs: Training documents (a transformer's windows are about one per sentence).

    Returns:
        The step budget, in ``[min(min_steps, max_steps), max_steps]``.
    """
    if settings.concrete == "cnn":
        return settings.max_steps
    passes = math.ceil(settings.epochs * max(1, n_train_docs) / settings.docs_per_step)
    return min(settings.max_steps, max(settings.min_steps, passes))


def eval_interval(settings: TrainSettings, budget: int) -> int:
    """Steps between dev evaluations.

    ``eval_frequency``, at most a fifth of the budget (so the last stretch is evaluated and a checkpoint is chosen among
    at least five).
    """
    return max(1, min(settings.eval_frequency, budget // 5))
