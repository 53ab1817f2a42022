"""Domain errors of the ml layer. Every message says what is wrong, where, and what to do next."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ml.converters.issues import ConversionIssue


class MLError(Exception):
    """Base of every error the ml layer raises on purpose."""


class DataError(MLError):
    """An input data file is unreadable or malformed; the message names the file and place."""


class ConversionError(MLError):
    """Spans could not be converted under the ``strict`` policy; ``issues`` lists every one.

    The converters raise ``ml.converters.issues.RejectedSpansError``, whose message says what to do for each kind of
    issue.
    """

    def __init__(self, issues: Sequence[ConversionIssue]) -> None:
        self.issues = list(issues)
        first = self.issues[0]
        more = len(self.issues) - 1
        suffix = f" (and {more} more)" if more else ""
        super().__init__(f"{first}{suffix}")


class ModelError(MLError):
    """A model directory is missing, incomplete or of an unknown kind."""


class TrainingError(MLError):
    """Training cannot start or failed (for example: no entity in the training data)."""


class EmptyPoolError(MLError):
    """Selection was asked to choose from an empty pool."""


class UnknownStrategyError(MLError):
    """A registry (for example the uncertainty strategies) was asked for a name it does not hold."""
