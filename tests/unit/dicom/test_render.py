"""Rendering: default window, MONOCHROME1 inversion, viewport, and parameter validation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gateway.dicom.render import RenderOptions, parse_options, render_frame
from gateway.errors import InvalidQuery, NotFound
from tests.factories import make_dataset, to_part10_bytes


def _png(data: bytes, **options: object) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(render_frame(data, 1, RenderOptions("image/png", **options)))))  # type: ignore[arg-type]


def test_without_a_window_in_the_instance_the_pixel_range_is_used() -> None:
    ds = make_dataset(rows=16, columns=16)  # pixels 0..255, no WindowCenter/Width
    image = _png(to_part10_bytes(ds))
    assert image.min() == 0 and image.max() == 255
    assert image[0, 0] == 0 and image[-1, -1] == 255


def test_monochrome1_is_inverted() -> None:
    plain = make_dataset(rows=16, columns=16)
    inverted = make_dataset(rows=16, columns=16, PhotometricInterpretation="MONOCHROME1")
    assert np.array_equal(_png(to_part10_bytes(inverted)), 255 - _png(to_part10_bytes(plain)))


def test_the_instance_window_is_the_default() -> None:
    ds = make_dataset(rows=16, columns=16, WindowCenter=100, WindowWidth=50)
    image = _png(to_part10_bytes(ds))
    values = np.arange(256).reshape(16, 16)
    # PS3.3 C.11.2.1.2.1: black at or below c - 0.5 - (w-1)/2 = 75, white from c - 0.5 + (w-1)/2 = 124.
    assert np.array_equal(image == 0, values <= 75) and np.array_equal(image == 255, values >= 124)


def test_viewport_bounds_the_size() -> None:
    ds = make_dataset(rows=64, columns=32)
    image = _png(to_part10_bytes(ds), viewport=(16, 16))
    assert image.shape == (16, 8)


def test_missing_frame_is_not_found() -> None:
    with pytest.raises(NotFound):
        render_frame(to_part10_bytes(make_dataset()), 2, RenderOptions())


@pytest.mark.parametrize(
    ("window", "viewport", "quality", "parameter"),
    [
        ("40", None, None, "window"),
        ("a,b", None, None, "window"),
        ("40,0", None, None, "window"),
        (None, "0,10", None, "viewport"),
        (None, "x", None, "viewport"),
        (None, None, "101", "quality"),
    ],
)
def test_bad_parameters_are_named(
    window: str | None, viewport: str | None, quality: str | None, parameter: str
) -> None:
    with pytest.raises(InvalidQuery) as error:
        parse_options("image/jpeg", window, viewport, quality)
    assert error.value.parameter == parameter
