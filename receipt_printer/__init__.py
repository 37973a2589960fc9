"""The kiosk's receipt printer: ESC/POS over serial, ``socket://`` or TCP 9100, and its simulator."""
