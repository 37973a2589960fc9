"""checkin package."""
