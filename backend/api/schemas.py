"""Request and response bodies of the HTTP API (separate from the ORM and from ml's dataclasses)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from annotation_guide.render import TEXT_FIELD


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class PredictTask(_Loose):
    """A task in a ``/predict`` call."""

    id: int | None = None
    data: dict[str, Any]

    @field_validator("data")
    @classmethod
    def _has_text(cls, data: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(data.get(TEXT_FIELD), str):
            raise ValueError(f"data.{TEXT_FIELD} must be a string")
        return data


class PredictParams(_Loose):
    """``params``: ``context`` holds the annotator's regions in interactive pre-annotation."""

    context: dict[str, Any] | None = None


class PredictRequest(_Loose):
    """What Label Studio sends to ``/predict``."""

    tasks: list[PredictTask] = Field(max_length=10_000)
    project: str | int | None = None
    label_config: str | None = None
    params: PredictParams = PredictParams()


class SetupRequest(_Loose):
    """What Label Studio sends to ``/setup``."""

    project: str | int
    schema_: str | None = Field(default=None, alias="schema")


class RouteOverride(BaseModel):
    """A manual route for one entity type."""

    route: Literal["model", "llm", "auto"]


class Rollback(BaseModel):
    """Which version to serve again."""

    version: str = Field(min_length=1)


def ls_project_id(value: str | int | None) -> int | None:
    """Label Studio sends the project as ``"<id>.<timestamp>"``; return the id."""
    if value is None:
        return None
    head = str(value).split(".", 1)[0]
    return int(head) if head.isdigit() else None
