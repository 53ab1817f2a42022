"""The Alembic migrations build exactly the schema the models declare, on SQLite and PostgreSQL, both ways."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from backend.db.models import Base
from backend.db.session import alembic_config, make_engine, upgrade

pytestmark = pytest.mark.integration


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_every_migration_downgrades_and_upgrades_again(database_url: str) -> None:
    command.downgrade(alembic_config(database_url), "0002")
    engine = make_engine(database_url)
    assert "ls_prediction_id" not in {c["name"] for c in inspect(engine).get_columns("prediction")}
    engine.dispose()
    command.downgrade(alembic_config(database_url), "base")
    engine = make_engine(database_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(database_url)
    engine = make_engine(database_url)
    assert "ls_prediction_id" in {c["name"] for c in inspect(engine).get_columns("prediction")}
    engine.dispose()
