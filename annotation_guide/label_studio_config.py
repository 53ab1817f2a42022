"""Read an existing Label Studio labeling config: check it against a guide, or start a guide from it.

Pure functions over the config's XML text (the stdlib parser; a config is a short document from the user's
own Label Studio, and expat refuses entity expansion attacks since Python 3.7.1 with expat 2.4).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from annotation_guide.errors import GuideError
from annotation_guide.schema import (
    COLOR_PATTERN,
    LABEL_NAME_MAX_LENGTH,
    LABEL_NAME_PATTERN,
    PLACEHOLDER,
    Guide,
    LabelStudioNames,
)

# fullmatch: Python's "$" also matches before a final newline, where the guide's (pydantic's) patterns do not
_LABEL_NAME = re.compile(LABEL_NAME_PATTERN)
_COLOR = re.compile(COLOR_PATTERN)
_EXAMPLES_IN_SKELETON = 5


@dataclass(frozen=True)
class LabelsControl:
    """A ``<Labels>`` control: its ``name``, the objects it labels (``toName``, comma-separated) and its labels."""

    name: str
    to_names: tuple[str, ...]
    labels: tuple[str, ...]
    colors: tuple[str | None, ...] = ()
    hints: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class TextObject:
    """A ``<Text>`` object: its ``name`` and the task data field it shows (``value="$text"`` -> ``text``).

    ``value_field`` is ``None`` when ``value`` is fixed text rather than a ``$field``.
    """

    name: str
    value_field: str | None


@dataclass(frozen=True)
class LabelConfig:
    """The parts of a labeling config nerloop uses."""

    labels_controls: tuple[LabelsControl, ...]
    texts: tuple[TextObject, ...]

    def text(self, name: str) -> TextObject | None:
        """The ``<Text>`` object called ``name``, if any."""
        return next((t for t in self.texts if t.name == name), None)

    def span_controls(self) -> list[LabelsControl]:
        """The ``<Labels>`` controls over at least one ``<Text>`` object."""
        return [c for c in self.labels_controls if any(self.text(n) is not None for n in c.to_names)]


def _tag(element: ET.Element) -> str:
    return element.tag.lower() if isinstance(element.tag, str) else ""


def parse_label_config(xml: str) -> LabelConfig:
    """Find the ``<Labels>`` controls and ``<Text>`` objects of a Label Studio labeling config.

    Tag names are matched without regard to case, as Label Studio does.

    Args:
        xml: The config (``<View>...</View>``).

    Returns:
        Every ``<Labels>`` control (with its ``<Label value>`` values in order) and every ``<Text>`` object.

    Raises:
        GuideError: the config is not well-formed XML (with the parser's line and column).
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise GuideError(f"the labeling config is not valid XML: {exc}") from None
    controls = []
    texts = []
    for element in root.iter():
        if _tag(element) == "labels":
            items = [label for label in element.iter() if _tag(label) == "label" and label.get("value") is not None]
            controls.append(
                LabelsControl(
                    name=element.get("name", ""),
                    to_names=tuple(n.strip() for n in element.get("toName", "").split(",") if n.strip()),
                    labels=tuple(str(label.get("value")) for label in items),
                    colors=tuple(label.get("background") for label in items),
                    hints=tuple(label.get("hint") for label in items),
                )
            )
        elif _tag(element) == "text":
            value = element.get("value", "")
            texts.append(TextObject(element.get("name", ""), value[1:] if value.startswith("$") else None))
    return LabelConfig(tuple(controls), tuple(texts))


def _control_for(config: LabelConfig, names: LabelStudioNames) -> tuple[LabelsControl | None, list[str]]:
    """The guide's ``<Labels>`` control, or the one it evidently means, with what to change in the guide."""
    named = next((c for c in config.labels_controls if c.name == names.from_name), None)
    if named is not None:
        return named, []
    candidates = config.span_controls()
    if len(candidates) == 1:
        found = candidates[0]
        return found, [
            f"the <Labels> control is named {found.name!r}, the guide says {names.from_name!r}: "
            f"put 'from_name: {found.name}' in the guide's label_studio section"
        ]
    if not config.labels_controls:
        return None, ["the labeling config has no <Labels> control; nerloop needs one over a <Text> object"]
    listed = ", ".join(repr(c.name) for c in config.labels_controls)
    return None, [
        f"no <Labels> control is named {names.from_name!r} (the config has {listed}): put the one nerloop "
        "should use as 'from_name' in the guide's label_studio section"
    ]


def _text_problems(config: LabelConfig, control: LabelsControl, *, names: LabelStudioNames) -> list[str]:
    over_texts = [n for n in control.to_names if config.text(n) is not None]
    chosen = names.to_name if names.to_name in over_texts else next(iter(over_texts), None)
    text = config.text(chosen) if chosen is not None else None
    if text is None:
        over = ", ".join(control.to_names) or "nothing"
        return [
            f"the <Labels> control {control.name!r} labels {over}, which is not a <Text> object: nerloop labels "
            "spans of text, so point its toName at a <Text>"
        ]
    problems = []
    if names.to_name != text.name:
        problems.append(
            f"the <Labels> control {control.name!r} labels {text.name}, the guide says {names.to_name!r}: "
            f"put 'to_name: {text.name}' in the guide's label_studio section"
        )
    if text.value_field is None:
        problems.append(f'the <Text> object {text.name!r} shows fixed text; give it value="${names.text_field}"')
    elif text.value_field != names.text_field:
        problems.append(
            f"the <Text> object {text.name!r} shows the task field {text.value_field!r}, the guide says "
            f"{names.text_field!r}: put 'text_field: {text.value_field}' in the guide's label_studio section"
        )
    return problems


def _label_problems(control: LabelsControl, guide: Guide) -> list[str]:
    problems = []
    values = [guide.label_value(label) for label in guide.labels]
    missing = [value for value in values if value not in control.labels]
    extra = [label for label in control.labels if label not in values]
    if missing:
        listed = ", ".join(repr(label) for label in missing)
        problems.append(
            f"the guide's label(s) {listed} are not in the config's <Labels name={control.name!r}>: add a "
            "<Label value=...> for each there, or rename the guide's entity types to the config's labels"
        )
    if extra:
        listed = ", ".join(repr(label) for label in extra)
        problems.append(
            f"the config's label(s) {listed} are not in the guide: add an entity type for each to the guide "
            "(a label a guide name cannot hold goes under label_studio.labels: {name: 'Label Value'}), "
            "or remove them from the config (spans with them are counted and left out of training)"
        )
    return problems


def check_label_config(xml: str, guide: Guide) -> list[str]:
    """Every difference between a Label Studio labeling config and a guide, in plain words.

    Args:
        xml: The project's labeling config.
        guide: The guide nerloop would use for the project.

    Returns:
        One sentence per mismatch, each saying what to change (empty when they match): no ``<Labels>`` control
        over a ``<Text>``, control / object / data field names other than the guide's ``label_studio`` section,
        guide labels missing from the config, config labels missing from the guide.
    """
    try:
        config = parse_label_config(xml)
    except GuideError as exc:
        return [str(exc)]
    names = guide.label_studio
    control, problems = _control_for(config, names)
    if control is None:
        return problems
    return [*problems, *_text_problems(config, control, names=names), *_label_problems(control, guide)]


def _quoted(value: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def _todo(what: str) -> str:
    return _quoted(f"{PLACEHOLDER}: {what}")


def guide_name(label: str) -> str:
    """A guide entity type name for a Label Studio label value.

    The value itself when it is one, else the value with every run of other characters as ``_`` (``Product Name`` ->
    ``Product_Name``), starting with a letter and cut to the longest name allowed.
    """
    if _LABEL_NAME.fullmatch(label) and len(label) <= LABEL_NAME_MAX_LENGTH:
        return label
    name = re.sub(r"[^A-Za-z0-9_\-]+", "_", label).strip("_-")
    name = name if name[:1].isalpha() and name.isascii() else f"L_{name}"
    return name[:LABEL_NAME_MAX_LENGTH]


def _entity_type_lines(label: str, *, color: str | None, hint: str | None) -> list[str]:
    lines = [f"  - name: {_quoted(guide_name(label))}"]
    if guide_name(label) != label:
        lines.append(f"    # Label Studio's label {_quoted(label)} (see label_studio.labels)")
    if color is not None and _COLOR.fullmatch(color):
        lines.append(f"    color: {_quoted(color)}")
    if hint:
        lines.append(f"    # the config's hint: {' '.join(hint.split())}")
    lines.append(f"    definition: {_todo(f'what a {label} is and what it is not, in at least 20 characters')}")
    lines.append("    examples:  # 5 to 10; each entity as written in its text (several: entities: [A, B])")
    for number in range(1, _EXAMPLES_IN_SKELETON + 1):
        lines.append(f"      - text: {_todo(f'a real sentence with a {label} in it ({number})')}")
        lines.append(f"        entity: {_quoted(PLACEHOLDER)}")
    lines += [
        "    edge_cases:  # at least one",
        f"      - case: {_todo(f'a hard case for {label}')}",
        f"        decision: {_todo('what annotators do with it')}",
        "    non_entities:  # at least one",
        f"      - text: {_todo(f'something that looks like a {label} but is not')}",
        f"        reason: {_todo('why it is not labelled')}",
    ]
    return lines


def guide_skeleton(xml: str, project_title: str) -> str:
    """Start a YAML guide from a Label Studio labeling config: one entity type per label of its ``<Labels>``.

    The skeleton does **not** validate until it is filled in: every definition, example, edge case and
    non-entity holds the placeholder ``TODO(fill in)``, and ``load_guide`` lists each remaining one by line and
    entity type. The ``label_studio`` section names the config's control, object and data field, so the filled
    guide passes ``check_label_config`` against the same config.

    Args:
        xml: The project's labeling config.
        project_title: The project's title (the guide's ``project``).

    Returns:
        The YAML text.

    Raises:
        GuideError: the config is not XML, or has no ``<Labels>`` control over a ``<Text>`` object.
    """
    config = parse_label_config(xml)
    controls = config.span_controls()
    if not controls:
        raise GuideError(
            "the labeling config has no <Labels> control over a <Text> object; nerloop labels spans of text"
        )
    control = controls[0]
    if not control.labels:
        raise GuideError(f"the <Labels> control {control.name!r} has no <Label value=...>; add the labels first")
    text = next(t for t in (config.text(n) for n in control.to_names) if t is not None)
    lines = [
        f"# Annotation guide started from the Label Studio project {project_title!r}.",
        f"# Replace every {PLACEHOLDER} with your own words; `nerloop guide validate` lists those left.",
        f"project: {_quoted(project_title.strip() or 'my-project')}",
        "# description: what the texts are and what to label in them (optional; the LLM reads it)",
        "language: en",
        "targets: {f1: 0.85, usable_labels: 200, good_labels: 500}",
        "label_studio:",
        f"  from_name: {_quoted(control.name)}",
        f"  to_name: {_quoted(text.name)}",
        f"  text_field: {_quoted(text.value_field or 'text')}",
    ]
    renamed = {guide_name(label): label for label in control.labels if guide_name(label) != label}
    if renamed:  # labels a guide name cannot hold: the guide names them its way, Label Studio keeps its own
        lines.append("  labels:")
        lines += [f"    {_quoted(name)}: {_quoted(label)}" for name, label in renamed.items()]
    lines.append("entity_types:")
    colors = control.colors or (None,) * len(control.labels)
    hints = control.hints or (None,) * len(control.labels)
    for label, color, hint in zip(control.labels, colors, hints, strict=True):
        lines += _entity_type_lines(label, color=color, hint=hint)
    return "\n".join(lines) + "\n"
