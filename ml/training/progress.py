"""Progress reports from a running training, passed to a callback the caller chooses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """One report: the stage, how far it is (0-1), seconds spent and the estimated seconds left."""

    stage: str
    fraction: float
    elapsed_s: float
    eta_s: float | None
    step: int = 0
    loss: float | None = None
    dev_f1: float | None = None


ProgressCallback = Callable[[Progress], None]


def ignore_progress(progress: Progress) -> None:
    """The default callback: reports nowhere."""
    del progress


def eta(fraction: float, elapsed_s: float) -> float | None:
    """Seconds left at the pace so far (``None`` until there is a pace)."""
    if fraction <= 0.0 or elapsed_s <= 0.0:
        return None
    return max(0.0, elapsed_s / fraction - elapsed_s)
