"""The database: ORM models, sessions, Alembic migrations."""
