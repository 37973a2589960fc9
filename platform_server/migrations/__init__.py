"""Alembic migrations of the platform database (run by `platform-server db upgrade` and at start-up)."""
