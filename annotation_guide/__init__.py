"""Annotation guides: the single place where a project's entity types are defined."""

from annotation_guide.errors import GuideError
from annotation_guide.label_studio_config import (
    LabelConfig,
    LabelsControl,
    TextObject,
    check_label_config,
    guide_skeleton,
    parse_label_config,
)
from annotation_guide.render import label_definitions, label_studio_config
from annotation_guide.schema import Guide, LabelStudioNames, load_guide

__all__ = [
    "Guide",
    "GuideError",
    "LabelConfig",
    "LabelStudioNames",
    "LabelsControl",
    "TextObject",
    "check_label_config",
    "guide_skeleton",
    "label_definitions",
    "label_studio_config",
    "load_guide",
    "parse_label_config",
]
