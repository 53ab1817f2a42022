"""Request and response bodies of the HTTP API (separate from the ORM and from ml's dataclasses)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class PredictTask(_Loose):
    """A task in a ``/predict`` call (its text is ``data[<the guide's text field>]``, checked by the route)."""

    id: int | None = None
    data: dict[str, Any]


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
