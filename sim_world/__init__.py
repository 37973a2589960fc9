"""Scenario files and the headless runner that plays them through the real kiosk."""
