"""The review pass's settings: plain pydantic, so that the backend's settings import it without spaCy."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReviewSettings(BaseModel):
    """How the cross-validated review pass runs (``NER_REVIEW__*``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="run a review pass after each promoted version")
    folds: int = Field(default=5, ge=2, le=20, description="k: each fold is checked by a model trained on the others")
    max_steps: int = Field(default=300, ge=1, description="CNN training steps of each fold model")
    min_confidence: float = Field(
        default=0.5, ge=0.0, le=1.0, description="suspects below this confidence are not listed"
    )
    max_docs: int = Field(default=2000, ge=2, description="the newest labelled tasks checked per pass")
    max_suspects: int = Field(default=500, ge=1, description="the most confident suspects kept and pushed per pass")
    min_docs: int = Field(default=20, ge=2, description="fewer labelled tasks: no pass (fold models learn nothing)")
    seed: int = 0
