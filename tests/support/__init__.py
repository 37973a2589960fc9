"""Helpers shared by test areas (import them from here, never from another area's conftest.py)."""
