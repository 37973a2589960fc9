"""camera.landmarks: the face geometry the kiosk and the platform share, on hand-built 68-point faces."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from camera.landmarks import (
    JAW_LEFT_END,
    JAW_RIGHT_END,
    LANDMARK_COUNT,
    LEFT_EYE,
    NOSE_TIP,
    RIGHT_EYE,
    eye_aspect_ratio,
    eye_darkness,
    head_yaw,
)

Points = npt.NDArray[np.float64]


def face(*, eye_width: float = 30.0, lid_gap: float = 9.0, nose_x: float = 100.0) -> Points:
    """A 68-point face: jaw ends at x 40 and 160, eyes centred at (70, 80) and (130, 80), nose at nose_x."""
    points = np.zeros((LANDMARK_COUNT, 2), dtype=np.float64)
    points[JAW_RIGHT_END] = (40.0, 100.0)
    points[JAW_LEFT_END] = (160.0, 100.0)
    points[NOSE_TIP] = (nose_x, 110.0)
    for eye, centre in ((RIGHT_EYE, 70.0), (LEFT_EYE, 130.0)):
        half, gap = eye_width / 2, lid_gap / 2
        # Outer corner, two upper lid points, inner corner, two lower lid points (dlib's order).
        points[eye] = [
            (centre - half, 80.0),
            (centre - half / 3, 80.0 - gap),
            (centre + half / 3, 80.0 - gap),
            (centre + half, 80.0),
            (centre + half / 3, 80.0 + gap),
            (centre - half / 3, 80.0 + gap),
        ]
    return points


def test_eye_aspect_ratio_is_the_lid_gap_over_the_eye_width() -> None:
    assert eye_aspect_ratio(face(eye_width=30.0, lid_gap=9.0)) == pytest.approx(0.3)
    assert eye_aspect_ratio(face(lid_gap=0.0)) == 0.0


def test_an_eye_with_no_width_measures_zero_not_a_division_error() -> None:
    assert eye_aspect_ratio(face(eye_width=0.0, lid_gap=5.0)) == 0.0


@given(
    gap=st.floats(0.0, 30.0),
    scale=st.floats(0.1, 20.0),
    dx=st.floats(-500.0, 500.0),
    dy=st.floats(-500.0, 500.0),
)
def test_eye_aspect_ratio_ignores_distance_and_place(gap: float, scale: float, dx: float, dy: float) -> None:
    points = face(lid_gap=gap)
    moved = points * scale + np.array([dx, dy])
    assert eye_aspect_ratio(moved) == pytest.approx(eye_aspect_ratio(points), abs=1e-9)
    assert eye_aspect_ratio(points) == pytest.approx(gap / 30.0)


def test_head_yaw_is_the_nose_place_between_the_jaw_ends() -> None:
    assert head_yaw(face(nose_x=100.0)) == 0.0
    assert head_yaw(face(nose_x=40.0)) == -1.0
    assert head_yaw(face(nose_x=160.0)) == 1.0
    assert head_yaw(face(nose_x=115.0)) == pytest.approx(0.25)


@given(nose=st.floats(40.0, 160.0), scale=st.floats(0.1, 20.0), dx=st.floats(-500.0, 500.0))
def test_head_yaw_stays_in_range_flips_in_a_mirror_and_ignores_distance(nose: float, scale: float, dx: float) -> None:
    points = face(nose_x=nose)
    yaw = head_yaw(points)
    assert -1.0 <= yaw <= 1.0
    mirrored = points.copy()
    mirrored[:, 0] = 200.0 - mirrored[:, 0]
    # In the mirror the jaw's ends swap sides: swap them back so the layout stays dlib's.
    mirrored[[JAW_RIGHT_END, JAW_LEFT_END]] = mirrored[[JAW_LEFT_END, JAW_RIGHT_END]]
    assert head_yaw(mirrored) == pytest.approx(-yaw, abs=1e-9)
    assert head_yaw(points * scale + np.array([dx, 0.0])) == pytest.approx(yaw, abs=1e-9)


def test_head_yaw_of_a_degenerate_jaw_is_frontal() -> None:
    points = face()
    points[JAW_LEFT_END] = points[JAW_RIGHT_END]
    assert head_yaw(points) == 0.0


def _picture(*, iris: bool) -> npt.NDArray[np.uint8]:
    """Skin at grey 180; with iris=True a dark band (grey 40) inside each eye of face()."""
    grey = np.full((200, 200), 180, dtype=np.uint8)
    if iris:
        for centre in (70, 130):
            grey[75:86, centre - 6 : centre + 7] = 40
    return grey


def test_eye_darkness_sees_the_iris_band_and_not_a_shut_lid() -> None:
    points = face()
    open_eyes = eye_darkness(_picture(iris=True), points)
    shut = eye_darkness(_picture(iris=False), points)
    assert open_eyes == pytest.approx(11 / 30)
    assert shut == 0.0


def test_eye_darkness_of_eyes_off_the_picture_is_zero() -> None:
    points = face() + np.array([1000.0, 1000.0])
    assert eye_darkness(_picture(iris=True), points) == 0.0
