"""Errors of the annotation guide layer."""


class GuideError(ValueError):
    """An annotation guide is missing, malformed or inconsistent. The message names the file and field."""
