"""Training settings: one validated model, stored in every model's meta."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
    max_steps: int = Field(default=6000, ge=1)
    patience: int = Field(default=1600, ge=0)
    eval_frequency: int = Field(default=200, ge=1)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    learn_rate: float | None = Field(default=None, gt=0.0)
    epochs: int = Field(default=3, ge=1, description="transformer: passes over the training data")
    batch_size: int = Field(default=16, ge=1, description="transformer: sentences per step")
    beam_width: int = Field(default=16, ge=2, description="CNN: beam width that gives entity probabilities")
    seed: int = 0
