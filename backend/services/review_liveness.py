"""Liveness of review passes: the attempt a process claimed, the heartbeat it beats, and the sweep's expiry of a
pass whose process died (``backend.services.review`` runs the passes; as ``run_liveness`` for training runs)."""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import ReviewPass, utcnow
from backend.db.session import session_scope

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """A pass attempt this process owns: its row, attempt number, whether its suspects are stored, its work
    directory."""

    pass_id: int
    attempt: int
    scored: bool  # the suspects are stored: only push
    work: Path


def owned(claim: Claim) -> ColumnElement[bool]:
    """The condition of every write of an attempt: the pass still runs this attempt."""
    return (ReviewPass.id == claim.pass_id) & (ReviewPass.attempt == claim.attempt) & (ReviewPass.status == "running")


class Heartbeat:
    """A daemon thread that stamps ``heartbeat_at`` of one pass attempt every ``interval_s`` while it runs (a fold
    model trains for minutes without calling back); it stops at exit, or once the pass is no longer the attempt's."""

    def __init__(self, sessions: sessionmaker[Session], claim: Claim, *, interval_s: float) -> None:
        self._sessions, self._claim, self._interval_s = sessions, claim, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-review-{claim.pass_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                with session_scope(self._sessions) as db:
                    stamped = db.execute(update(ReviewPass).where(owned(self._claim)).values(heartbeat_at=utcnow()))
                if stamped.rowcount != 1:  # type: ignore[attr-defined]
                    return
            except Exception as exc:  # the next beat tries again; a long outage expires the pass, as it should
                log.warning("review pass %s: heartbeat not recorded (%s)", self._claim.pass_id, exc)


def expire_stale_passes(db: Session, *, timeout_s: float) -> list[int]:
    """Fail the running review passes whose process stopped beating for ``timeout_s`` (a killed worker) and remove
    their work directories (the fold models); the caller commits. A later request or promotion runs them again.

    Returns:
        The ids of the passes failed.
    """
    cutoff = utcnow() - timedelta(seconds=timeout_s)
    silent = select(ReviewPass).where(
        ReviewPass.status == "running",
        (ReviewPass.heartbeat_at < cutoff) | (ReviewPass.heartbeat_at.is_(None) & (ReviewPass.created_at < cutoff)),
    )
    expired: list[int] = []
    for row in db.scalars(silent.with_for_update(skip_locked=True)):
        row.status, row.finished_at = "failed", utcnow()
        row.error = f"no heartbeat for over {timeout_s:.0f} s: the worker was lost; ask again (POST .../review)"
        work = (row.details or {}).get("work_dir")
        if work:
            shutil.rmtree(work, ignore_errors=True)
        log.warning("review pass %s expired: %s; removed %s", row.id, row.error, work or "nothing")
        expired.append(row.id)
    db.flush()
    return expired
