"""Face verification on the platform: reference encodings at import, 1:1 comparison at identify."""
