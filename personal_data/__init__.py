"""Rules for personal data shared by the kiosk and the platform: validation, masking, encryption.

Pure functions with no I/O, so device, kiosk and platform code can all use them.
"""
