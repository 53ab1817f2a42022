"""``INSERT ... ON CONFLICT`` for the dialect in use (SQLite and PostgreSQL share the syntax, not the class)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session


def upsert(db: Session, table: Any) -> Any:
    """An insert statement on ``table`` that supports ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    return (pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert)(table)
