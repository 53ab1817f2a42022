"""The annotation guide: one YAML file per project that defines every entity type."""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails

from annotation_guide.errors import GuideError
from annotation_guide.mentions import mention_problems
from annotation_guide.problems import FieldProblem, guide_error, read_yaml

# The Label Studio names nerloop uses when a guide has no ``label_studio`` section.
FROM_NAME = "label"
TO_NAME = "text"
TEXT_FIELD = "text"

# What ``guide_skeleton`` writes where the user must write: a guide holding it anywhere does not validate.
PLACEHOLDER = "TODO(fill in)"


def _written(value: str) -> str:
    if PLACEHOLDER in value:
        raise ValueError(f"still holds the skeleton's placeholder {PLACEHOLDER!r}: replace it with your own words")
    return value


# The one definition of each pattern: the Label Studio config reader checks labels and colours with them too.
LABEL_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_\-]*$"
LABEL_NAME_MAX_LENGTH = 40
COLOR_PATTERN = r"^#[0-9a-fA-F]{6}$"
TAG_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]*$"
# Every language spaCy ships is two or three lower-case letters; anything else is never passed to its importer.
_LANGUAGE_SHAPE = re.compile(r"[a-z]{2,3}")


@lru_cache(maxsize=32)
def _language_problem(code: str) -> str | None:
    """Why spaCy cannot build a tokenizer for ``code``, or ``None``; cached, as building one takes a moment."""
    codes = "a spaCy language code such as 'en', 'de', 'fr' or 'zh', or 'xx' for a mix of languages"
    if not _LANGUAGE_SHAPE.fullmatch(code):
        return f"must be {codes}, not {code!r}"
    import spacy  # here, not at the top: only this check needs spaCy, and importing it takes seconds

    try:
        spacy.blank(code)
    except ImportError as exc:
        if "E048" in str(exc):
            return f"spaCy has no language {code!r}; use {codes} (see spaCy's list of languages)"
        reason = str(exc).split(". ")[0]
        return f"spaCy's {code!r} tokenizer needs a package that is not installed ({reason}): install it, or use 'xx'"
    return None


def _spacy_language(code: str) -> str:
    problem = _language_problem(code)
    if problem is not None:
        raise ValueError(problem)
    return code


LabelName = Annotated[str, Field(pattern=LABEL_NAME_PATTERN, max_length=LABEL_NAME_MAX_LENGTH)]
Phrase = Annotated[str, Field(min_length=1), AfterValidator(_written)]
TagName = Annotated[str, Field(pattern=TAG_NAME_PATTERN, max_length=100)]
LanguageCode = Annotated[str, AfterValidator(_spacy_language)]


def label_key(name: str) -> str:
    """A label name as people and LLMs read it.

    Lower case, any run of ``-``, ``_`` or whitespace one ``-``, none at the ends (``Work_of art`` and ``WORK-OF-ART``
    are ``work-of-art``). The one rule for labels that differ only in spelling: the guide refuses two such names, and
    ml.llm.parse matches answers' labels by it.
    """
    return "-".join(name.lower().replace("_", " ").replace("-", " ").split())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Example(_Strict):
    """A sentence and the instances of the type in it: one as ``entity``, or several as ``entities``.

    Exactly one of the two is given. Each entity occurs verbatim in ``text`` as whole words, once for each time it
    is listed, without overlapping another, and has no whitespace at its edges (see
    ``annotation_guide.mentions``).
    """

    text: Phrase
    entity: Phrase | None = None
    entities: list[Phrase] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _entities_in_text(self) -> Example:
        if (self.entity is None) == (self.entities is None):
            raise ValueError(
                "give exactly one of 'entity: <the entity as written in the text>' "
                "or 'entities: [<entity>, <entity>, ...]' (several entities of this type in one text)"
            )
        problems = mention_problems(self.text, self.mentions)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def mentions(self) -> tuple[str, ...]:
        """The entities the example shows, in the order given (one for ``entity``)."""
        return (self.entity,) if self.entity is not None else tuple(self.entities or ())


class EdgeCase(_Strict):
    """A hard case and the decision annotators must take on it."""

    case: Phrase
    decision: Phrase


class NonEntity(_Strict):
    """A string that looks like the type but must not be labelled as it, and why."""

    text: Phrase
    reason: Phrase


class LabelStudioNames(_Strict):
    """The names the project's Label Studio labeling config uses (``<Labels name toName>``, ``<Text value>``).

    Attributes:
        from_name: The ``name`` of the ``<Labels>`` control.
        to_name: The ``name`` of the ``<Text>`` object it labels (the control's ``toName``).
        text_field: The task data field the ``<Text>`` shows, without ``$`` (``value="$text"`` -> ``text``).
        labels: The ``<Label value>`` of an entity type whose Label Studio label is not its guide name (a label
            with spaces such as ``Product Name``, which a guide name cannot hold): guide name -> label value.
    """

    from_name: TagName = FROM_NAME
    to_name: TagName = TO_NAME
    text_field: TagName = TEXT_FIELD
    labels: dict[str, Annotated[str, Field(min_length=1, max_length=200)]] = Field(default_factory=dict)


class EntityType(_Strict):
    """One entity type of the project."""

    name: LabelName
    definition: Annotated[str, Field(min_length=20), AfterValidator(_written)]
    examples: list[Example] = Field(min_length=5, max_length=10)
    edge_cases: list[EdgeCase] = Field(min_length=1)
    non_entities: list[NonEntity] = Field(min_length=1)
    color: str | None = Field(default=None, pattern=COLOR_PATTERN)


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

    project: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_written)]
    description: Annotated[str, AfterValidator(_written)] = ""
    language: LanguageCode = "en"
    targets: Targets = Targets()
    label_studio: LabelStudioNames = LabelStudioNames()
    entity_types: list[EntityType] = Field(min_length=1)

    @model_validator(mode="wrap")
    @classmethod
    def _unique_names(cls, data: Any, handler: ModelWrapValidatorHandler[Guide]) -> Guide:
        """Refuse names that are one name to people and the LLM, with every other problem of the guide.

        The raw names are compared, so an entity type that is invalid for another reason does not hide a duplicate.
        """
        duplicates = _duplicate_names(data)
        try:
            guide = handler(data)
        except ValidationError as exc:
            if not duplicates:
                raise
            raise ValidationError.from_exception_data(exc.title, [*_details(exc), *duplicates]) from None
        if duplicates:
            raise ValidationError.from_exception_data(cls.__name__, duplicates)
        return guide

    @model_validator(mode="after")
    def _label_values_known(self) -> Guide:
        values = self.label_studio.labels
        unknown = sorted(set(values) - set(self.labels))
        if unknown:
            raise ValueError(
                f"label_studio.labels names {', '.join(map(repr, unknown))}, which no entity type is called; "
                "its keys are the guide's entity type names"
            )
        shown = [self.label_value(name) for name in self.labels]
        if len(set(shown)) < len(shown):
            raise ValueError("label_studio.labels gives two entity types the same Label Studio label")
        return self

    def label_value(self, name: str) -> str:
        """The ``<Label value>`` Label Studio shows for an entity type.

        Its name, unless ``label_studio.labels`` maps it.
        """
        return self.label_studio.labels.get(name, name)

    @property
    def label_names(self) -> dict[str, str]:
        """Label Studio label value -> guide name, for the labels that differ (what reading Label Studio maps)."""
        return {value: name for name, value in self.label_studio.labels.items() if value != name}

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
        """A hash of the guide's content (not of its formatting).

        Fields added to the format later are left out while they are unset (an example's unused ``entity`` or
        ``entities``, a default ``label_studio`` section), so a guide written before them keeps its hash, and
        with it its prompt version and the LLM answers cached for it.
        """
        content: dict[str, Any] = self.model_dump(mode="json")
        if self.label_studio == LabelStudioNames():
            del content["label_studio"]
        for entity_type in content["entity_types"]:
            for example in entity_type["examples"]:
                for key in ("entity", "entities"):
                    if example[key] is None:
                        del example[key]
        canonical = json.dumps(content, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _details(error: ValidationError) -> list[InitErrorDetails]:
    """Pydantic's errors in the form that builds a ``ValidationError`` again (to add more to them)."""
    details: list[InitErrorDetails] = []
    for item in error.errors():
        detail = InitErrorDetails(type=item["type"], loc=item["loc"], input=item["input"])
        if "ctx" in item:
            detail["ctx"] = item["ctx"]
        details.append(detail)
    return details


def _duplicate_names(data: Any) -> list[InitErrorDetails]:
    """One error per entity type whose name an earlier one already has, as people and the LLM read names."""
    types = data.get("entity_types") if isinstance(data, dict) else None
    if not isinstance(types, list):
        return []
    found: list[InitErrorDetails] = []
    seen: dict[str, tuple[int, str]] = {}
    for index, item in enumerate(types):
        name = item.get("name") if isinstance(item, dict) else getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            continue
        # "Person" and "person", or "work-of-art" and "work_of_art", are one name to an annotator and to the LLM,
        # whose labels are matched by label_key (ml.llm.parse)
        key = label_key(name)
        if key in seen:
            first, other = seen[key]
            same = "is" if other == name else f"differs only in case or '-'/'_' from {other!r},"
            problem = FieldProblem(
                f"the name {name!r} {same} taken by entity type {first + 1}; merge the two or rename one", loc=()
            )
            found.append(
                InitErrorDetails(type="value_error", loc=("entity_types", index), input=name, ctx={"error": problem})
            )
        seen.setdefault(key, (index, name))
    return found


def load_guide(path: str | Path) -> Guide:
    """Read and validate an annotation guide.

    Args:
        path: A YAML file.

    Returns:
        The validated guide.

    Raises:
        GuideError: the file cannot be read, is not YAML, or is not a valid guide. The message starts with the
            path and lists every problem, each with its line and the entity type it concerns, in plain words.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GuideError(f"{path}: cannot read the guide ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise GuideError(f"{path}: not UTF-8 text (byte {exc.start}); save the guide as UTF-8") from None
    raw, node, problems = read_yaml(text, path)
    if not isinstance(raw, dict):
        what = "is empty" if raw is None else f"holds a {type(raw).__name__}"
        raise GuideError(
            f"{path}: the file {what}; a guide is a YAML mapping with 'project' and 'entity_types' "
            "(see 'The annotation guide format' in README.md)"
        )
    try:
        guide = Guide.model_validate(raw)
    except ValidationError as exc:
        raise guide_error(path, exc, raw=raw, node=node, earlier=problems) from None
    if problems:
        raise guide_error(path, None, raw=raw, node=node, earlier=problems)
    return guide
