"""Pure renderers: everything that other parts derive from a guide."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from annotation_guide.schema import Guide

FROM_NAME = "label"
TO_NAME = "text"
TEXT_FIELD = "text"

_PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")


def label_studio_config(guide: Guide) -> str:
    """Render the Label Studio labeling config (``<View>`` XML) of a guide.

    Args:
        guide: The project's guide.

    Returns:
        XML with one ``<Labels>`` control named ``label`` over the ``text`` field.
    """
    lines = ["<View>", f'  <Labels name="{FROM_NAME}" toName="{TO_NAME}">']
    for index, entity_type in enumerate(guide.entity_types):
        color = entity_type.color or _PALETTE[index % len(_PALETTE)]
        hint = entity_type.definition.strip().splitlines()[0]
        lines.append(
            f"    <Label value={quoteattr(entity_type.name)} background={quoteattr(color)} hint={quoteattr(hint)}/>"
        )
    lines += ["  </Labels>", f'  <Text name="{TO_NAME}" value="${TEXT_FIELD}"/>', "</View>"]
    return "\n".join(lines) + "\n"


def label_definitions(guide: Guide) -> dict[str, str]:
    """Map each label to its definition, in the guide's order (the LLM prompt's label section)."""
    return {t.name: " ".join(t.definition.split()) for t in guide.entity_types}
