"""SamplingSettings: one set of defaults and checks for every generation entry point, and the old keywords."""

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from echokdm.cli._common import SAMPLING_OPTIONS, add_sampling_options, sampling_settings
from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.demo import DemoSettings
from echokdm.evaluation import EvaluateConfig
from echokdm.evaluation.runner import table3_sampling
from echokdm.generation import DEFAULT_FPS, SamplingSettings, generate_loop
from echokdm.generation.motion import own_motion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline


def test_defaults_are_one_set():
    s = SamplingSettings()
    # the fast sampler measured best (benchmarks/f2i.py): 25 steps, k = 3 on 8 keyframes, detail path;
    # fit_region off (benchmarks/fit_region.py: better on the phantom, worse EF control on the real cine)
    assert dataclasses.asdict(s) == {"mode": "gamma", "k": 3, "num_inference_steps": 25, "seed": 0,
                                     "batch_size": 16, "fit_keypoints": True, "detail": True,
                                     "keyframes": 8, "interpolation": "bilinear", "fit_region": False}
    assert DEFAULT_FPS == 50.0
    assert s.pipeline_kwargs() == {"mode": "gamma", "k": 3, "num_inference_steps": 25, "batch_size": 16,
                                   "fit_keypoints": True, "detail": True, "keyframes": 8, "interpolation": "bilinear",
                                   "fit_region": False}
    # the paper's sampler stays available
    paper = SamplingSettings.paper()
    assert (paper.num_inference_steps, paper.k, paper.detail, paper.keyframes, paper.fit_region) == (
        200, 100, False, None, False)
    assert SamplingSettings.paper(seed=3, mode="per_frame").replace(seed=0) == paper.replace(mode="per_frame")
    # the paper's Table 3 protocol differs on purpose, and only where it says so
    assert table3_sampling() == SamplingSettings(mode="per_frame", fit_keypoints=False, detail=False, k=100,
                                                 num_inference_steps=200, keyframes=None, fit_region=False)
    assert EvaluateConfig().sampling == table3_sampling() and DemoSettings().sampling == SamplingSettings()
    assert DemoSettings.quick().sampling == SamplingSettings()


@pytest.mark.parametrize(("changes", "message"), [
    ({"num_inference_steps": 0}, "num_inference_steps (--steps) must be an integer >= 1, got 0"),
    ({"num_inference_steps": 2.5}, "num_inference_steps (--steps) must be an integer >= 1, got 2.5"),
    ({"num_inference_steps": 3, "k": 5}, "k (--k) must be at most num_inference_steps (--steps) = 3, got 5"),
    ({"k": -1}, "k (--k) must be an integer >= 0, got -1"),
    ({"batch_size": 0}, "batch_size (--batch-size) must be an integer >= 1, got 0"),
    ({"batch_size": True}, "batch_size (--batch-size) must be an integer >= 1, got True"),
    ({"mode": "warp"}, "mode must be 'gamma' or 'per_frame', got 'warp'"),
    ({"seed": -1}, "seed (--seed) must be a non-negative integer, got -1"),
    ({"fit_keypoints": 1}, "fit_keypoints must be True or False, got 1"),
])
def test_bad_settings_are_refused_with_the_setting_named(changes, message):
    with pytest.raises(ValueError) as info:
        SamplingSettings(**changes)
    assert str(info.value) == message


def test_settings_are_frozen_and_plain():
    s = SamplingSettings(k=np.int64(3), num_inference_steps=np.int32(4), seed=np.uint8(7), fit_keypoints=np.bool_(0))
    assert (type(s.k), type(s.num_inference_steps), type(s.seed), type(s.fit_keypoints)) == (int, int, int, bool)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.k = 2
    assert s.replace(k=1).k == 1 and s.k == 3
    with pytest.raises(ValueError, match="at most"):
        s.replace(k=9)


@pytest.fixture(scope="module")
def loop_inputs():
    clip = simulate_clip(sample_patient(0, 0), n_frames=6, size=SIZE, fps=25.0)
    return tiny_pipeline(), clip.frames[0], clip.keypoints[0], own_motion(clip.keypoints, 0)


def test_old_keywords_still_work_for_one_release(loop_inputs):
    pipe, frame, kp, targets = loop_inputs
    new = generate_loop(pipe, frame, kp, targets, fps=25, progress=False,
                        sampling=SamplingSettings(mode="per_frame", k=2, num_inference_steps=3, seed=4, batch_size=2))
    with pytest.warns(FutureWarning, match=r"generate_loop: mode, k, num_inference_steps, seed, batch_size .*"
                                           r"sampling=SamplingSettings\(mode='per_frame', k=2"):
        old = generate_loop(pipe, frame, kp, targets, fps=25, progress=False, mode="per_frame", k=2,
                            num_inference_steps=3, seed=4, batch_size=2)
    np.testing.assert_array_equal(old.frames, new.frames)  # same seeds, same frames
    assert old.metadata == new.metadata
    with pytest.raises(TypeError, match="unexpected keyword argument 'steps'"):
        generate_loop(pipe, frame, kp, targets, fps=25, steps=3)
    with pytest.raises(TypeError, match="not also as k="):
        generate_loop(pipe, frame, kp, targets, fps=25, sampling=SamplingSettings(), k=3)


def test_settings_classes_map_their_old_fields():
    with pytest.warns(FutureWarning, match=r"table3_sampling\(\)\.replace\(k=3, seed=2\)"):
        config = EvaluateConfig(k=3, seed=2)
    assert config.sampling == table3_sampling().replace(k=3, seed=2)
    with pytest.warns(FutureWarning, match=r"EvaluateConfig\.k is deprecated.*EvaluateConfig\.sampling\.k"):
        assert config.k == 3
    with pytest.raises(AttributeError):
        config.k = 4
    assert "k" not in dataclasses.asdict(config) and dataclasses.asdict(config)["sampling"]["k"] == 3
    with pytest.warns(FutureWarning, match="DemoSettings"):
        demo = DemoSettings(num_inference_steps=3, k=2)
    assert demo.sampling == SamplingSettings(num_inference_steps=3, k=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EvaluateConfig(sampling=table3_sampling().replace(k=3))  # the new way: no warning


def _parser(defaults):
    parser = argparse.ArgumentParser()
    add_sampling_options(parser, defaults)
    return parser


def test_the_cli_declares_the_options_once():
    from echokdm.cli import build_parser

    commands = {}
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            commands = action.choices
    for name, defaults in (("generate", SamplingSettings()), ("synthesize", SamplingSettings()),
                           ("evaluate", table3_sampling())):
        flags = {a.option_strings[0]: a for a in commands[name]._actions if a.option_strings}
        for field, flag in SAMPLING_OPTIONS.items():
            assert flag in flags, (name, flag)
            assert flags[flag].default is None, (name, flag)  # not given: the command's own settings
            shown = getattr(defaults, field)
            if field not in ("fit_keypoints", "detail", "fit_region"):
                text = "every frame" if field == "keyframes" and shown is None else shown
                assert f"(default: {text})" in flags[flag].help, (name, flag)
        assert "--paper-sampler" in flags
        assert "--no-fit-keypoints" in flags["--fit-keypoints"].option_strings
    args = _parser(table3_sampling()).parse_args(["--steps", "20", "--k", "5", "--fit-keypoints", "--seed", "3"])
    assert sampling_settings(args, table3_sampling()) == table3_sampling().replace(
        num_inference_steps=20, k=5, fit_keypoints=True, seed=3)
    args = _parser(SamplingSettings()).parse_args(["--no-fit-keypoints", "--mode", "per_frame", "--batch-size", "2"])
    assert sampling_settings(args) == SamplingSettings(fit_keypoints=False, mode="per_frame", batch_size=2)
    # without defaults, an option not given keeps the command's own settings (the demo's --quick)
    args = _parser(None).parse_args(["--seed", "4"])
    assert sampling_settings(args, SamplingSettings(num_inference_steps=20, k=10)) == SamplingSettings(
        num_inference_steps=20, k=10, seed=4)
    with pytest.raises(ValueError, match=r"k \(--k\) must be at most num_inference_steps \(--steps\) = 2, got 3"):
        sampling_settings(_parser(SamplingSettings()).parse_args(["--steps", "2"]))


def test_paper_sampler_option():
    parser = _parser(SamplingSettings())
    assert sampling_settings(parser.parse_args(["--paper-sampler"])) == SamplingSettings.paper()
    # options given still apply over it; the command's base keeps its mode and keypoint fitting
    args = parser.parse_args(["--paper-sampler", "--steps", "50", "--k", "20", "--seed", "5"])
    assert sampling_settings(args) == SamplingSettings.paper(num_inference_steps=50, k=20, seed=5)
    assert sampling_settings(parser.parse_args(["--paper-sampler"]), table3_sampling()) == table3_sampling()
    assert sampling_settings(parser.parse_args([])) == SamplingSettings()


def test_detail_and_keyframes_options():
    args = _parser(SamplingSettings()).parse_args(["--steps", "50", "--k", "10", "--keyframes", "4"])
    assert sampling_settings(args) == SamplingSettings(num_inference_steps=50, k=10, keyframes=4, detail=True)
    args = _parser(SamplingSettings()).parse_args(["--keyframes", "0", "--no-detail"])
    assert sampling_settings(args) == SamplingSettings(detail=False, keyframes=None)  # 0: every frame
    assert SamplingSettings(keyframes=4).pipeline_kwargs()["keyframes"] == 4
    assert SamplingSettings().pipeline_kwargs()["detail"] is True
    for bad, match in (({"keyframes": 1}, r"keyframes \(--keyframes\) must be an integer >= 2"),
                       ({"keyframes": 2.5}, "keyframes"), ({"detail": "yes"}, r"detail \(--detail/--no-detail\)")):
        with pytest.raises(ValueError, match=match):
            SamplingSettings(**bad)


def test_interpolation_option():
    args = _parser(SamplingSettings()).parse_args(["--interpolation", "bicubic"])
    assert sampling_settings(args).interpolation == "bicubic"
    assert sampling_settings(args).pipeline_kwargs()["interpolation"] == "bicubic"
    for value in ("bilinear", "bicubic"):  # the paper's sampler warps bilinearly whatever the base says
        assert SamplingSettings.paper(interpolation=value).interpolation == value
        assert SamplingSettings(interpolation=value).replace(**dataclasses.asdict(SamplingSettings.paper())) \
            .interpolation == "bilinear"
    with pytest.raises(ValueError, match=r"interpolation \(--interpolation\) must be one of bilinear, bicubic"):
        SamplingSettings(interpolation="lanczos")
    with pytest.raises(SystemExit):
        _parser(SamplingSettings()).parse_args(["--interpolation", "nearest"])


def test_fit_region_option():
    args = _parser(SamplingSettings()).parse_args(["--fit-region"])
    assert sampling_settings(args) == SamplingSettings(fit_region=True)
    assert sampling_settings(args).pipeline_kwargs()["fit_region"] is True
    assert sampling_settings(_parser(SamplingSettings()).parse_args(["--no-fit-region"])).fit_region is False
    assert SamplingSettings.paper().fit_region is False  # the paper's KDM has no region
    with pytest.raises(ValueError, match=r"fit_region \(--fit-region/--no-fit-region\) must be True or False"):
        SamplingSettings(fit_region="yes")
