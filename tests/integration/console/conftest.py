"""The platform tests' database fixtures (SQLite file, private PostgreSQL schema) for the console tests."""

from tests.support.platform import db_url, pg_schema_url

__all__ = ["db_url", "pg_schema_url"]
