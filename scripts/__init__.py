"""Developer scripts (code generation)."""
