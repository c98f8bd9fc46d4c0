"""Persistence: SQLAlchemy 2.0 models, the database handle and Alembic migrations."""
