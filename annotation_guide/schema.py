"""The annotation guide: one YAML file per project that defines every entity type."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from annotation_guide.errors import GuideError

LabelName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*$", max_length=40)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Example(_Strict):
    """A sentence in which ``entity`` occurs verbatim and is an instance of the type."""

    text: str = Field(min_length=1)
    entity: str = Field(min_length=1)

    @model_validator(mode="after")
    def _entity_in_text(self) -> Example:
        if self.entity not in self.text:
            raise ValueError(f"entity {self.entity!r} does not occur in its text {self.text!r}")
        return self


class EdgeCase(_Strict):
    """A hard case and the decision annotators must take on it."""

    case: str = Field(min_length=1)
    decision: str = Field(min_length=1)


class NonEntity(_Strict):
    """A string that looks like the type but must not be labelled as it, and why."""

    text: str = Field(min_length=1)
    reason: str = Field(min_length=1)


class EntityType(_Strict):
    """One entity type of the project."""

    name: LabelName
    definition: str = Field(min_length=20)
    examples: list[Example] = Field(min_length=5, max_length=10)
    edge_cases: list[EdgeCase] = Field(min_length=1)
    non_entities: list[NonEntity] = Field(min_length=1)
    color: str | None = Field(default=None, pattern=r"^#[0-9a-fA-F]{6}$")


class Targets(_Strict):
    """Project-wide goals every entity type is measured against."""

    f1: float = Field(default=0.85, gt=0.0, le=1.0)
    usable_labels: int = Field(default=200, gt=0)
    good_labels: int = Field(default=500, gt=0)

    @model_validator(mode="after")
    def _usable_below_good(self) -> Targets:
        if self.usable_labels > self.good_labels:
            raise ValueError("usable_labels must not exceed good_labels")
        return self


class Guide(_Strict):
    """A whole annotation guide."""

    project: str = Field(min_length=1, max_length=200)
    description: str = ""
    language: str = "en"
    targets: Targets = Targets()
    entity_types: list[EntityType] = Field(min_length=1)

    @field_validator("entity_types")
    @classmethod
    def _unique_names(cls, types: list[EntityType]) -> list[EntityType]:
        seen: set[str] = set()
        for entity_type in types:
            if entity_type.name in seen:
                raise ValueError(f"entity type {entity_type.name!r} is defined twice")
            seen.add(entity_type.name)
        return types

    @property
    def labels(self) -> list[str]:
        """The label set, in the guide's order."""
        return [t.name for t in self.entity_types]

    def entity_type(self, name: str) -> EntityType:
        """Return the entity type called ``name``."""
        for entity_type in self.entity_types:
            if entity_type.name == name:
                return entity_type
        raise KeyError(name)

    @property
    def sha256(self) -> str:
        """A hash of the guide's content (not of its formatting)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {first['msg']}{suffix}"


def load_guide(path: str | Path) -> Guide:
    """Read and validate an annotation guide.

    Args:
        path: A YAML file.

    Returns:
        The validated guide.

    Raises:
        GuideError: one line naming the file and the field that is wrong.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GuideError(f"{path}: cannot read the guide ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise GuideError(f"{path}:{where} is not valid YAML").with_traceback(None) from None
    if not isinstance(raw, dict):
        raise GuideError(f"{path}: a guide must be a YAML mapping with 'project' and 'entity_types'")
    try:
        return Guide.model_validate(raw)
    except ValidationError as exc:
        raise GuideError(f"{path}: {_describe(exc)}") from None
