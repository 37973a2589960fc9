"""Scenario files and the headless runner that plays them through the real kiosk."""

import lazy_imports

lazy_imports.install()
