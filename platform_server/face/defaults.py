"""Face verification defaults, in one dependency-free module: the verifier and `[face]` config share them.

Kept apart from dlib_verifier so that reading the configuration never loads dlib and its models.
"""

from __future__ import annotations

from typing import Final

# dlib's LFW-calibrated value is 0.6. The shared test set separates at 0.53 (largest same-person
# distance) vs 0.69 (smallest different-person distance); 0.55 sits in that gap on the cautious side,
# because a false accept (a stand-in evaluates tenders) costs more than a false reject (staff check),
# and dlib's model is known to separate East Asian faces less well than LFW's. See docs/face.md.
DEFAULT_THRESHOLD: Final = 0.55
# A 12-megapixel phone JPEG is typically 2-5 MB; the decoder shrinks it in draft mode while decoding,
# so its pixel count costs neither memory nor time (see image_decoding.py).
DEFAULT_MAX_IMAGE_BYTES: Final = 4 * 1024 * 1024
DEFAULT_MAX_PIXELS: Final = 40_000_000
DEFAULT_MAX_CAPTURES: Final = 5
