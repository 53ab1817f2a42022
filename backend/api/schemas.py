"""Request and response bodies of the HTTP API (separate from the ORM and from ml's dataclasses)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from backend.db.ids import MAX_ID, is_db_id
from backend.services.errors import InvalidInputError


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class PredictTask(_Loose):
    """A task in a ``/predict`` call (its text is ``data[<the guide's text field>]``, checked by the route)."""

    id: int | None = None
    data: dict[str, Any]


@with_config(ConfigDict(extra="allow"))
class RegionValue(TypedDict, total=False):
    """A region's ``value``: what interactive pre-annotation reads of a drawn span (other keys pass through)."""

    start: int
    end: int
    text: str
    labels: list[str]


@with_config(ConfigDict(extra="allow"))
class ContextRegion(TypedDict, total=False):
    """One region of ``params.context.result`` (a ``labels`` region, or any other kind, which is ignored)."""

    value: RegionValue


@with_config(ConfigDict(extra="allow"))
class PredictContext(TypedDict, total=False):
    """``params.context``: a plain dict for the route, with ``result`` checked to be a list of regions."""

    result: list[ContextRegion]


class PredictParams(_Loose):
    """``params``: ``context`` holds the annotator's regions in interactive pre-annotation."""

    context: PredictContext | None = None


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
    """Label Studio sends the project as ``"<id>.<timestamp>"``; return the id (None when no project is given).

    Raises:
        InvalidInputError: (422) the value is not such a string, nor an id (ASCII digits only: ``str.isdigit``
            also takes ``"²"``), or the id does not fit an id column.
    """
    if value is None:
        return None
    head = str(value).split(".", 1)[0] if isinstance(value, str) else str(value)
    pid = int(head) if head.isascii() and head.isdigit() and len(head) <= 10 else None
    if pid is None or not is_db_id(pid):
        raise InvalidInputError(
            f"'project' must be Label Studio's '<id>.<timestamp>' or an id from 1 to {MAX_ID}, not {str(value)[:40]!r}"
        )
    return pid
