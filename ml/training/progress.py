"""Progress reports from a running training, passed to a callback the caller chooses."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Progress:
    """One progress report of a training job.

    The stage (``train``, then ``calibrate`` and ``evaluate``), how far the job is (0-1), seconds spent and the
    estimated seconds left, the last step, its loss and the last dev F1 (the training's).
    """

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


# Words per second of the final predictions (calibration on dev, evaluation on dev and test) before any is
# measured, per architecture: the CNN decodes with a beam of 16 (bench/train_conll.py, 2 loaded cores).
PREDICT_WORDS_PER_S = {"cnn": 2500.0, "spacy-transformer": 1000.0, "hf-transformer": 1500.0}


class JobProgress:
    """One fraction and ETA over a whole training job.

    The training steps, then the predictions that calibrate (dev) and evaluate (dev and test) the model.

    The training reports its own fraction and ETA (from its pace); what comes after is estimated from the words it
    will predict, at ``words_per_s`` until the first predictions measure the model's own speed. Every report passed
    on has ``fraction`` = the job's share done and ``eta_s`` = the job's seconds left.
    """

    def __init__(self, callback: ProgressCallback, *, after_words: int, words_per_s: float) -> None:
        self._callback = callback
        self._after_words = max(0, after_words)
        self._words_per_s = words_per_s
        self._started = time.monotonic()
        self._after_started: float | None = None
        self._words_done = 0
        self._fraction = 0.0
        self.stage = "train"

    def _after_s(self) -> float:
        """Seconds the predictions after the training still need."""
        left = max(0, self._after_words - self._words_done)
        if self._after_started is not None and self._words_done > 0:
            spent = time.monotonic() - self._after_started
            if spent > 0:
                return left * spent / self._words_done
        return left / self._words_per_s

    def _send(self, progress: Progress, left_s: float | None) -> None:
        elapsed = time.monotonic() - self._started
        fraction = 0.0 if left_s is None else (1.0 if elapsed + left_s <= 0 else elapsed / (elapsed + left_s))
        # a slower pace than estimated lengthens the ETA; the fraction shown never goes back
        self._fraction = max(self._fraction, min(1.0, fraction))
        self._callback(replace(progress, fraction=self._fraction, elapsed_s=elapsed, eta_s=left_s))

    def train(self, progress: Progress) -> None:
        """A report of the training (its fraction and ETA are the training's own)."""
        if progress.fraction >= 1.0:
            left: float | None = self._after_s()
        else:
            left = None if progress.eta_s is None else progress.eta_s + self._after_s()
        self._send(replace(progress, stage="train"), left)

    def begin(self, stage: str) -> None:
        """A stage after the training starts (``calibrate``, ``evaluate``)."""
        self.stage = stage
        if self._after_started is None:
            self._after_started = time.monotonic()
        self._send(Progress(stage, 0.0, 0.0, None), self._after_s())

    def predicted(self, words: int) -> None:
        """``words`` more words predicted in the current stage."""
        self._words_done += words
        self._send(Progress(self.stage, 0.0, 0.0, None), self._after_s())
