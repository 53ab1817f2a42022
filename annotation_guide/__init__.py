"""Annotation guides: the single place where a project's entity types are defined."""

from annotation_guide.errors import GuideError
from annotation_guide.render import label_definitions, label_studio_config
from annotation_guide.schema import Guide, load_guide

__all__ = ["Guide", "GuideError", "label_definitions", "label_studio_config", "load_guide"]
