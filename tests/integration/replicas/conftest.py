"""Fixtures of the replica tests: the platform tests' private PostgreSQL schema."""

from __future__ import annotations

from tests.support.platform import pg_schema_url

__all__ = ["pg_schema_url"]
