import numpy as np
import pytest

from echokdm.data import Cine as DataCine
from echokdm.io import Cine, pseudonymise
from echokdm.io._convert import rgb_to_gray, to_gray_frames, to_unit_range


def test_cine_normalises_types_and_reports_shape():
    frames = np.zeros((5, 8, 10), dtype=np.float64)
    cine = Cine(frames, fps=25, spacing_mm=(0.3, 0.4), clip_id="c1", masks=np.ones((5, 8, 10), bool),
                labelled_frames=[3, 1, 3])
    assert cine.frames.dtype == np.float32
    assert cine.masks.dtype == np.uint8
    assert (cine.n_frames, cine.height, cine.width) == (5, 8, 10)
    assert cine.duration_s == pytest.approx(0.2)
    assert cine.spacing_mm == (0.3, 0.4)
    assert cine.labelled_frames.tolist() == [1, 3]
    assert "5x8x10" in cine.summary() and "25 fps" in cine.summary()
    assert DataCine is Cine


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"frames": np.zeros((8, 10))}, "(T, H, W)"),
        ({"frames": np.zeros((0, 8, 10))}, "0 frames"),
        ({"frames": np.zeros((2, 8, 10)), "fps": 0}, "fps"),
        ({"frames": np.zeros((2, 8, 10)), "spacing_mm": (0.3, -1)}, "spacing_mm"),
        ({"frames": np.zeros((2, 8, 10)), "masks": np.zeros((2, 8, 9))}, "masks shape"),
        ({"frames": np.zeros((2, 8, 10)), "labelled_frames": [2]}, "labelled_frames"),
    ],
)
def test_cine_rejects_bad_values_naming_the_clip(kwargs, message):
    with pytest.raises(ValueError) as err:
        Cine(clip_id="clipX", **kwargs)
    assert message in str(err.value) and "clipX" in str(err.value)


def test_rgb_to_gray_uses_bt601_luma():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    gray = to_gray_frames(rgb[None])  # (1, 1, 4, 3) -> (1, 1, 4)
    np.testing.assert_allclose(gray[0, 0], [0.299, 0.587, 0.114, 1.0], atol=1e-6)
    np.testing.assert_allclose(rgb_to_gray(np.ones((2, 4))[..., :4][:, :3]), [1.0, 1.0], atol=1e-6)


def test_to_unit_range_scales_integers_and_floats():
    np.testing.assert_allclose(to_unit_range(np.array([0, 255], np.uint8)), [0, 1])
    np.testing.assert_allclose(to_unit_range(np.array([0, 1023], np.uint16), max_value=1023), [0, 1])
    np.testing.assert_allclose(to_unit_range(np.array([-32768, 32767], np.int16)), [0, 1], atol=1e-6)
    np.testing.assert_allclose(to_unit_range(np.array([0.2, 0.5])), [0.2, 0.5])  # already in [0, 1]
    np.testing.assert_allclose(to_unit_range(np.array([10.0, 20.0, 30.0])), [0, 0.5, 1])


def test_to_gray_frames_layouts():
    assert to_gray_frames(np.zeros((6, 7), np.uint8)).shape == (1, 6, 7)
    assert to_gray_frames(np.zeros((3, 6, 7), np.uint8)).shape == (3, 6, 7)
    assert to_gray_frames(np.zeros((6, 7, 3), np.uint8)[None]).shape == (1, 6, 7)
    assert to_gray_frames(np.zeros((6, 7, 3), np.uint8)).shape == (6, 7, 3)  # 3-D is always a gray cine
    assert to_gray_frames(np.zeros((2, 6, 7, 3), np.uint8)).shape == (2, 6, 7)
    with pytest.raises(ValueError, match="shape"):
        to_gray_frames(np.zeros((2, 6, 7, 5)))


def test_pseudonymise_is_salted_and_stable(monkeypatch):
    a = pseudonymise("PAT-001", salt="secret")
    assert a == pseudonymise("PAT-001", salt="secret")
    assert a != pseudonymise("PAT-001", salt="other")
    assert a.startswith("P") and len(a) == 13 and "PAT" not in a
    monkeypatch.setenv("ECHOKDM_ID_SALT", "secret")
    assert pseudonymise("PAT-001") == a
    assert pseudonymise("x", salt="s", prefix="C").startswith("C")
