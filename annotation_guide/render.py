"""Pure renderers: everything that other parts derive from a guide."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from annotation_guide.schema import FROM_NAME, TEXT_FIELD, TO_NAME, Guide

__all__ = ["FROM_NAME", "TEXT_FIELD", "TO_NAME", "label_definitions", "label_studio_config"]

_PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")


def label_studio_config(guide: Guide) -> str:
    """Render the Label Studio labeling config (``<View>`` XML) of a guide.

    Args:
        guide: The project's guide.

    Returns:
        XML with one ``<Labels>`` control over one ``<Text>`` object, named as the guide's ``label_studio``
        section says (by default ``label`` over ``text``, showing the task field ``text``).
    """
    names = guide.label_studio
    lines = ["<View>", f"  <Labels name={quoteattr(names.from_name)} toName={quoteattr(names.to_name)}>"]
    for index, entity_type in enumerate(guide.entity_types):
        color = entity_type.color or _PALETTE[index % len(_PALETTE)]
        hint = entity_type.definition.strip().splitlines()[0]
        lines.append(
            f"    <Label value={quoteattr(guide.label_value(entity_type.name))} background={quoteattr(color)} "
            f"hint={quoteattr(hint)}/>"
        )
    text = f"<Text name={quoteattr(names.to_name)} value={quoteattr('$' + names.text_field)}/>"
    lines += ["  </Labels>", f"  {text}", "</View>"]
    return "\n".join(lines) + "\n"


def label_definitions(guide: Guide) -> dict[str, str]:
    """Map each label to its definition, in the guide's order (the LLM prompt's label section)."""
    return {t.name: " ".join(t.definition.split()) for t in guide.entity_types}
