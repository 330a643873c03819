"""The echo adapter: schema of the 40 LV keypoints and their conditioning image (KDM x̂_K).

Keypoints follow shared/DESIGN.md: ``(40, 2)`` ``(x, y)`` pixels, keypoint ``j`` on the
image-left wall at chord ``j`` (basal 0 … apical 19), keypoint ``39 - j`` on the image-right
wall; read 0 … 39 they walk from the left base over the apex to the right base.

Drawn parts, one colour each (RGB in [0, 1]):

=============  ====================================================  ====================
part           points                                                colour
=============  ====================================================  ====================
long axis      basal centre -> apex, from the keypoints alone         :data:`LONG_AXIS_COLOUR`
annulus        keypoint 0 -> keypoint 39                              :data:`ANNULUS_COLOUR`
left wall      keypoints 0 … 19                                       :data:`LEFT_WALL_COLOUR`
right wall     keypoints 20 … 39                                      :data:`RIGHT_WALL_COLOUR`
=============  ====================================================  ====================

Later rows are drawn over earlier ones. The two walls are not joined at the apex (keypoints
19 and 20 are the two ends of the most apical chord): the apical gap and its width stay visible.

:data:`ECHO_ADAPTER` (registry name ``"echo"``, :func:`echokdm.adapters.get_adapter`) is what the
generic KDM core sees: this renderer, the echo manifests and training clips
(:mod:`echokdm.data.echo_pairs`: phantom or mask keypoints; phantom, cached or TPS flows) and
keypoint re-detection by an LV segmentation model.
"""

from __future__ import annotations

import numpy as np

from echokdm.adapters._render import KeypointSchema, render_schema
from echokdm.adapters.base import Adapter
from echokdm.geometry.keypoints import CHORD_FRACTIONS, N_CHORDS, N_KEYPOINTS
from echokdm.geometry.volumes import long_axis_from_keypoints

__all__ = [
    "ANNULUS_COLOUR",
    "ECHO_ADAPTER",
    "ECHO_FLIP_PERMUTATION",
    "ECHO_SCHEMA",
    "LEFT_WALL",
    "LEFT_WALL_COLOUR",
    "LONG_AXIS_COLOUR",
    "RIGHT_WALL",
    "RIGHT_WALL_COLOUR",
    "EchoAdapter",
    "long_axis_line",
    "render_keypoints",
]

#: Keypoint indices of the image-left wall, basal (0) to apical (19).
LEFT_WALL = tuple(range(N_CHORDS))
#: Keypoint indices of the image-right wall, apical (20) to basal (39).
RIGHT_WALL = tuple(range(N_CHORDS, N_KEYPOINTS))
#: Left wall: red.
LEFT_WALL_COLOUR = (1.0, 0.0, 0.0)
#: Right wall: green.
RIGHT_WALL_COLOUR = (0.0, 1.0, 0.0)
#: Mitral annulus (keypoint 0 to 39): blue.
ANNULUS_COLOUR = (0.0, 0.0, 1.0)
#: Long axis (basal centre to apex): yellow.
LONG_AXIS_COLOUR = (1.0, 1.0, 0.0)
#: A horizontal flip swaps image-left and image-right: keypoint ``j`` becomes ``39 - j``.
ECHO_FLIP_PERMUTATION = tuple(range(N_KEYPOINTS - 1, -1, -1))


def long_axis_line(keypoints: np.ndarray) -> np.ndarray:
    """``(2, 2)`` long axis ``[basal centre, apex]`` ``(x, y)`` implied by 40 keypoints.

    With every keypoint present this is :func:`echokdm.geometry.volumes.long_axis_from_keypoints`.
    With some missing, the same least-squares fit of the chord midpoints against ``t_j`` uses the
    complete chords only (at least two); otherwise the result is NaN (nothing is drawn).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    base, apex, _ = long_axis_from_keypoints(kp)
    if np.isfinite(base).all() and np.isfinite(apex).all():
        return np.stack([base, apex])
    mid = (kp[:N_CHORDS] + kp[::-1][:N_CHORDS]) / 2  # (20, 2) chord midpoints
    ok = np.isfinite(mid).all(axis=1)
    if ok.sum() < 2:
        return np.full((2, 2), np.nan)
    t = CHORD_FRACTIONS[ok]
    slope = ((t - t.mean())[:, None] * (mid[ok] - mid[ok].mean(0))).sum(0) / np.sum((t - t.mean()) ** 2)
    base = mid[ok].mean(0) - t.mean() * slope  # midpoint line at t = 0
    return np.stack([base, base + slope])


ECHO_SCHEMA = KeypointSchema(
    name="echo",
    keypoint_names=tuple(f"left wall {j}" for j in range(N_CHORDS))
    + tuple(f"right wall {j}" for j in range(N_CHORDS - 1, -1, -1)),
    lines={"annulus": (0, N_KEYPOINTS - 1), "left wall": LEFT_WALL, "right wall": RIGHT_WALL},
    colours={"long axis": LONG_AXIS_COLOUR, "annulus": ANNULUS_COLOUR,
             "left wall": LEFT_WALL_COLOUR, "right wall": RIGHT_WALL_COLOUR},
    flip_permutation=ECHO_FLIP_PERMUTATION,
    derived=lambda kp: {"long axis": long_axis_line(kp)},
)
"""The 40 LV keypoints: names (``"left wall j"`` / ``"right wall j"`` for chord j), lines, colours."""


def render_keypoints(keypoints: np.ndarray, shape: tuple[int, int], *, thickness: float = 1.0) -> np.ndarray:
    """The echo conditioning image x̂_K: anti-aliased coloured lines of the 40 keypoints.

    Parameters
    ----------
    keypoints : numpy.ndarray
        ``(40, 2)`` or ``(..., 40, 2)`` ``(x, y)`` pixels (integer = pixel centre). A NaN row
        breaks the wall there (it is never drawn at the origin), removes the annulus if it is
        keypoint 0 or 39, and leaves the long axis to the complete chords.
    shape : (H, W)
        Image size in pixels.
    thickness : float
        Line width in pixels; a pixel's value is the line's coverage of it.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(3, H, W)`` (or ``(..., 3, H, W)``) RGB in [0, 1] on black; colours as
        the module table.

    Examples
    --------
    >>> t = (np.arange(20) + 0.5) / 20
    >>> left = np.stack([np.full(20, 10.0), 28 - 20 * t], axis=1)
    >>> kp = np.concatenate([left, (left + [10, 0])[::-1]]).astype(np.float32)
    >>> image = render_keypoints(kp, (32, 32))
    >>> image.shape, image[:, 20, 10].tolist()  # a pixel on the left wall is red
    ((3, 32, 32), [1.0, 0.0, 0.0])
    """
    return render_schema(ECHO_SCHEMA, keypoints, shape, thickness=thickness)


class EchoAdapter(Adapter):
    """The echo domain for the generic KDM core (see the module docstring).

    Training data (``data.keypoints``: ``phantom`` | ``masks``; ``data.flows``: ``phantom`` |
    ``cache`` | ``tps``) come from an echo manifest (:func:`echokdm.data.manifest.load_manifest`)
    through :func:`echokdm.data.echo_pairs.echo_clip_loader`.
    """

    name = "echo"
    schema = ECHO_SCHEMA
    default_config = "echo/kdm_112.yaml"
    keypoint_sources = ("phantom", "masks")
    flow_sources = ("phantom", "cache", "tps")
    thickness = 1.0

    def load_manifest(self, path):
        from echokdm.data.manifest import load_manifest

        return load_manifest(path)

    def clip_loader(self, manifest_path, data):
        from echokdm.data.echo_pairs import echo_clip_loader

        return echo_clip_loader(manifest_path, data)

    def augment_appearance(self, images, generator):
        """The scanner look randomised (:func:`echokdm.echo.augment.random_ultrasound_look`: speckle,
        blur, TGC, haze, noise, gamma and gain, compression blocks; no blood-pool change, which needs
        a mask), so that a KDM trained on the phantom keeps the look of the frame it starts from."""
        from echokdm.echo.augment import LookAugmentation, random_ultrasound_look

        return random_ultrasound_look(images, None, generator, LookAugmentation(p_noisy_outside=0.3))

    def detect_keypoints(self, frames: np.ndarray, model=None, *, apex_direction="auto") -> np.ndarray:
        """40 keypoints ``(T, 40, 2)`` per frame from the masks of an LV segmentation ``model``
        (an :class:`~echokdm.echo.segmentation.LVSegmentationNet`, or anything with its
        ``predict_masks``), per frame, no temporal smoothing (as ``echokdm evaluate`` scores MD);
        ``apex_direction`` as :func:`~echokdm.geometry.temporal.sequence_keypoints` (``"auto"``: guessed
        from the masks, which a few generated frames of a real clip can get wrong)."""
        import torch

        from echokdm.geometry.temporal import sequence_keypoints

        if model is None:
            raise ValueError("echo keypoints are re-detected by an LV segmentation model: pass one "
                             "(a run's best/ from echokdm train seg, loaded with LVSegmentationNet.from_pretrained)")
        with torch.inference_mode():
            masks = model.predict_masks(torch.from_numpy(np.ascontiguousarray(frames, np.float32)))
        return sequence_keypoints(masks.cpu().numpy(), smooth_sigma_frames=0.0, apex_direction=apex_direction).keypoints


ECHO_ADAPTER = EchoAdapter()
"""The echo adapter instance (registry name ``"echo"``)."""
