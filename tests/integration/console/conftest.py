"""The platform tests' database fixtures (SQLite file, private PostgreSQL schema) for the console tests."""

from tests.integration.platform_server.conftest import db_url, pg_schema_url

__all__ = ["db_url", "pg_schema_url"]
