"""uwb package."""
