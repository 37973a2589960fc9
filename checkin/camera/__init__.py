"""Kiosk camera: OpenCV capture on a worker thread, face quality gates, blink liveness, best frames."""
