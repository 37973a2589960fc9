"""Kiosk face capture: quality gates, the liveness challenge and the best frames, over the camera device."""
