"""Errors of the annotation guide layer."""

from __future__ import annotations

from collections.abc import Sequence


class GuideError(ValueError):
    """An annotation guide is missing, malformed or inconsistent. The message names the file and field.

    Attributes:
        problems: Each problem on its own (line, place and what to do), when the guide was read but is invalid.
    """

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        """Keep the message and the problems it lists.

        Args:
            message: The whole message, starting with the file path.
            problems: The problems it lists, one string each.
        """
        super().__init__(message)
        self.problems = tuple(problems)
