"""EF regression from the video: shapes, windows, learning a visible EF, determinism, save/load."""

import numpy as np
import pandas as pd
import pytest
import torch

from echokdm.echo.ef_regression import (
    EFClips,
    EFRegressionNet,
    EFTrainSettings,
    _window,
    ef_clips,
    predict_ef,
    train_ef_regression,
)

TINY = dict(channels=(4, 8), n_frames=4, size=16, stride=1, batch_size=8)


def _disc_clips(efs, size=16, n_frames=6):
    """Clips of a disc whose radius grows with the EF: a network that learns anything learns it."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    frames = [np.repeat((255 * (r < 2 + 5 * ef / 100))[None], n_frames, 0).astype(np.uint8) for ef in efs]
    ids = [str(i) for i in range(len(efs))]
    return EFClips(frames, np.asarray(efs, float), [f"p{i}" for i in ids], [f"c{i}" for i in ids])


def test_output_is_one_ef_per_clip_in_percent():
    model = EFRegressionNet(channels=(4, 8), n_frames=4, size=16)
    out = model(torch.rand(3, 1, 4, 16, 16))
    assert out.shape == (3,)
    assert torch.all((out > 0) & (out < 100))  # an untrained network starts near 50 %


def test_windows_wrap_around_short_clips():
    frames = np.arange(5)[:, None, None] * np.ones((1, 2, 2), np.uint8)
    assert _window(frames, 3, 4, 2)[:, 0, 0].tolist() == [3, 0, 2, 4]


def test_training_learns_a_visible_ef_and_is_deterministic():
    clips = _disc_clips(np.linspace(20, 70, 8))
    settings = EFTrainSettings(**TINY, steps=150, lr=3e-3, seed=0)
    model = train_ef_regression(clips, settings)
    mae = np.abs(predict_ef(model, clips) - clips.ef).mean()
    baseline = np.abs(clips.ef - clips.ef.mean()).mean()
    assert mae < 0.5 * baseline
    again = train_ef_regression(clips, EFTrainSettings(**TINY, steps=5, seed=1))
    twice = train_ef_regression(clips, EFTrainSettings(**TINY, steps=5, seed=1))
    np.testing.assert_array_equal(predict_ef(again, clips), predict_ef(twice, clips))


def test_save_and_load_give_the_same_predictions(tmp_path):
    clips = _disc_clips([30.0, 60.0])
    model = train_ef_regression(clips, EFTrainSettings(**TINY, steps=2))
    model.save_pretrained(tmp_path / "ef")
    loaded = EFRegressionNet.from_pretrained(tmp_path / "ef")
    np.testing.assert_allclose(predict_ef(loaded, clips), predict_ef(model, clips), rtol=1e-5)


def test_bad_settings_and_unlabelled_clips_are_refused():
    with pytest.raises(ValueError, match="n_frames"):
        EFTrainSettings(channels=(4, 8, 16), n_frames=2, size=32)
    with pytest.raises(ValueError, match="size"):
        EFTrainSettings(channels=(4, 8, 16), n_frames=8, size=4)
    clips = _disc_clips([30.0])
    clips.ef[:] = np.nan
    with pytest.raises(ValueError, match="reference EF"):
        train_ef_regression(clips, EFTrainSettings(**TINY, steps=1))


def test_ef_clips_reads_a_manifest_and_lists_unreadable_clips(tmp_path):
    from echokdm.data.manifest import load_manifest
    from echokdm.data.phantom.export import write_cohort

    write_cohort(tmp_path / "c", n_patients=2, format="echonet", size=32, fps=20.0, n_beats=1.0, seed=0,
                 progress=False)
    table = load_manifest(tmp_path / "c" / "manifest.csv")
    broken = pd.concat([table, table.iloc[[0]].assign(clip_id="missing", path=str(tmp_path / "none.avi"))])
    clips = ef_clips(broken, 16)
    assert len(clips) == 2 and clips.frames[0].shape[1:] == (16, 16) and clips.frames[0].dtype == np.uint8
    np.testing.assert_allclose(clips.ef, table["ef_reference"].to_numpy(float))
    assert [item for item, _ in clips.skipped] == ["missing"]
