"""Training settings: one validated model, stored in every model's meta."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Architecture = Literal["cnn", "transformer"]


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
    max_steps: int = Field(default=6000, ge=1)
    patience: int = Field(default=1600, ge=0)
    eval_frequency: int = Field(default=200, ge=1)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    learn_rate: float | None = Field(default=None, gt=0.0)
    epochs: int = Field(default=3, ge=1, description="transformer: passes over the training data")
    batch_size: int = Field(default=16, ge=1, description="transformer: sentences per step")
    beam_width: int = Field(default=16, ge=2, description="CNN: beam width that gives entity probabilities")
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
    cold_every: int = Field(
        default=10, ge=0, description="drift guard: every Nth retrain in a row starts cold (0: never forced, 1: always)"
    )

    @model_validator(mode="after")
    def _one_tok2vec(self) -> TrainSettings:
        shaped = [n for n in ("width", "depth", "embed_rows") if getattr(self, n) is not None]
        if shaped and self.init_tok2vec_from is not None:
            names = ", ".join(shaped)
            raise ValueError(f"{names} cannot be set with init_tok2vec_from: the sourced tok2vec has its own")
        return self
