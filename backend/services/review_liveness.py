"""Liveness of review passes.

The attempt a process claimed, the heartbeat it beats, and the sweep's expiry of a pass whose process died
(``backend.services.review`` runs the passes; as ``run_liveness`` for training runs).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import ReviewPass, utcnow
from backend.services.run_liveness import Heartbeat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """A pass attempt this process owns.

    Its row, attempt number, whether its suspects are stored, its work directory.
    """

    pass_id: int
    attempt: int
    scored: bool  # the suspects are stored: only push
    work: Path


def owned(claim: Claim) -> ColumnElement[bool]:
    """The condition of every write of an attempt: the pass still runs this attempt."""
    return (ReviewPass.id == claim.pass_id) & (ReviewPass.attempt == claim.attempt) & (ReviewPass.status == "running")


def heartbeat(sessions: sessionmaker[Session], claim: Claim, *, interval_s: float) -> Heartbeat:
    """The heartbeat of a pass attempt (a fold model trains for minutes without calling back)."""
    return Heartbeat(
        sessions,
        lambda: update(ReviewPass).where(owned(claim)).values(heartbeat_at=utcnow()),
        name=f"review pass {claim.pass_id} attempt {claim.attempt}",
        interval_s=interval_s,
    )


def expire_stale_passes(db: Session, *, timeout_s: float) -> list[int]:
    """Fail the running review passes whose process stopped beating for ``timeout_s`` (a killed worker).

    Their work directories (the fold models) are removed; the caller commits. A later request or promotion runs them
    again.

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
