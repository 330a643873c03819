"""OF-net training data, loss, a short training run, the flow cache and the two commands."""

import argparse
import os

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from echokdm.cli.flow import register
from echokdm.cli.train import register as register_train
from echokdm.config import ConfigError
from echokdm.data.ground_truth import GroundTruthFlows, ground_truth_files
from echokdm.data.manifest import load_manifest
from echokdm.data.phantom.export import write_cohort
from echokdm.geometry.flow import warp
from echokdm.models.ofnet import OFNet
from echokdm.training import losses
from echokdm.training.flow import (
    PairSampler,
    build_ofnet,
    cache_flows,
    flow_loss,
    frame_pairs,
    load_flow_config,
    load_pair_data,
    predict_clip_flows,
    train_flow,
)

TINY_MODEL = {"pyramid_channels": [8, 16, 24, 32], "feature_channels": 16, "estimator_channels": [32, 24, 16],
              "context_channels": [24, 16], "context_dilations": [1, 2]}
TINY = {"model": TINY_MODEL, "data": {"size": 64, "gaps": [1, 3], "val_pairs": 12},
        "train": {"steps": 4, "batch_size": 2, "val_every": 2, "checkpoint_every": 2, "warmup_steps": 0,
                  "ema_decay": None}}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("flow_cohort")
    write_cohort(out, n_patients=4, format="nifti", seed=3, size=64, fps=25.0, n_beats=1.0, progress=False)
    return out / "manifest.csv"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained tiny OF-net whose flow heads are randomised (non-zero flows)."""
    torch.manual_seed(0)
    net = build_ofnet(load_flow_config(None, TINY).model, 64)
    for head in (net.estimator.head, net.context.body[-1]):
        torch.nn.init.normal_(head.weight, std=0.05)
    path = tmp_path_factory.mktemp("ckpt") / "ofnet"
    net.save_pretrained(path)
    return path


def test_frame_pairs():
    pairs = frame_pairs(5, (1, 3))
    assert pairs.dtype == np.int64 and pairs.shape == (2 * 4 + 2 * 2, 2)
    assert pairs[:4].tolist() == [[0, 1], [1, 0], [1, 2], [2, 1]]
    assert [0, 3] in pairs.tolist() and [4, 1] in pairs.tolist()
    assert frame_pairs(5, (1,), both_directions=False).tolist() == [[0, 1], [1, 2], [2, 3], [3, 4]]
    assert frame_pairs(2, (4,)).shape == (0, 2)
    with pytest.raises(ValueError, match="gaps"):
        frame_pairs(5, (0,))


def test_config_defaults_match_the_yaml_and_typos_are_named():
    from echokdm.config import config_to_dict

    yaml_path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "echo", "flow.yaml")
    assert config_to_dict(load_flow_config(yaml_path)) == config_to_dict(load_flow_config(None))
    with pytest.raises(ConfigError, match="smooth_wieght"):
        load_flow_config({"loss": {"smooth_wieght": 1.0}})
    partial = load_flow_config({"train": {"steps": 7}})
    assert partial.train.steps == 7 and partial.train.ema_decay == 0.99  # OF-net defaults kept
    realistic = load_flow_config(os.path.join(os.path.dirname(yaml_path), "flow_realistic.yaml"))
    assert realistic.model.normalize_input and realistic.data.appearance_augment  # the packaged real-echo net
    assert realistic.loss.supervised_weight == 0.0 and realistic.loss.smooth_weight == 0.2


def test_pair_data_truth_and_sampler(cohort):
    frame = load_manifest(cohort)
    truth = ground_truth_files(cohort)
    assert set(truth) == set(frame["clip_id"])
    data = load_pair_data(frame, "train", 64, (1, 3), truth=truth, progress=False)
    assert data.has_truth and not data.skipped
    assert all(f.dtype == np.uint8 and f.shape[1:] == (64, 64) for f in data.frames)
    assert len(data) == sum(len(frame_pairs(len(f), (1, 3))) for f in data.frames)
    config = load_flow_config(None, TINY).data
    sampler = PairSampler(data, config, batch_size=3, with_truth=True)
    a = sampler(torch.Generator().manual_seed(1))
    b = sampler(torch.Generator().manual_seed(1))
    assert a["source"].shape == (3, 1, 64, 64) and a["flow"].shape == (3, 2, 64, 64)
    for key in a:
        torch.testing.assert_close(a[key], b[key])  # the generator alone decides the batch
    assert 0.0 <= float(a["source"].min()) and float(a["target"].max()) <= 1.0


def test_truth_flows_explain_the_frames(cohort):
    """The exact flow (resized with the frames) warps source onto target better than no motion."""
    frame = load_manifest(cohort)
    data = load_pair_data(frame, "train", 64, (3,), truth=ground_truth_files(cohort), progress=False)
    truth = GroundTruthFlows(data)
    clip, a, b = data.pairs[len(data) // 2]
    src = data.frames[clip][a].astype(np.float32) / 255
    tgt = data.frames[clip][b].astype(np.float32) / 255
    flow = truth.flow(clip, a, b)
    fan = truth.fan(clip)
    assert flow.shape == (2, 64, 64) and fan.dtype == bool
    assert np.abs(flow).max() > 0.3
    warped_err = np.abs(warp(src, flow) - tgt)[fan].mean()
    assert warped_err < np.abs(src - tgt)[fan].mean()


def test_spatial_augmentation_moves_frames_and_flow_together(cohort):
    frame = load_manifest(cohort)
    data = load_pair_data(frame, "train", 64, (3,), truth=ground_truth_files(cohort), progress=False)
    config = load_flow_config(None, {**TINY, "data": {**TINY["data"], "spatial_prob": 1.0, "intensity_prob": 0.0,
                                                       "flip_prob": 0.5, "rotate_deg": 15.0}}).data
    batch = PairSampler(data, config, batch_size=6, with_truth=True)(torch.Generator().manual_seed(4))
    inside = torch.zeros(6, 1, 64, 64)
    inside[..., 12:-12, 12:-12] = 1
    with_flow = losses.masked_mean((warp(batch["source"], batch["flow"]) - batch["target"]).abs(), inside)
    without = losses.masked_mean((batch["source"] - batch["target"]).abs(), inside)
    assert with_flow < without


def test_flow_loss_parts_and_gradients(cohort):
    config = load_flow_config(None, {**TINY, "loss": {"census_weight": 0.5, "ssim_weight": 0.5,
                                                      "level_weights": [1.0, 0.5], "supervised_weight": 0.1}})
    torch.manual_seed(0)
    model = build_ofnet(config.model, 64)
    frame = load_manifest(cohort)
    data = load_pair_data(frame, "train", 64, (3,), truth=ground_truth_files(cohort), progress=False)
    batch = PairSampler(data, config.data, 2, with_truth=True)(torch.Generator().manual_seed(0))
    loss, parts = flow_loss(model, batch, 0, config.loss)
    assert set(parts) == {"photo", "smooth", "visible", "epe"}
    assert parts["visible"] == 1.0  # zero flows at start: every pixel passes the forward-backward check
    loss.backward()
    assert model.estimator.head.weight.grad.abs().sum() > 0


def test_sampler_gives_the_sector_and_the_supervised_epe_counts_only_inside_it(cohort):
    frame = load_manifest(cohort)
    data = load_pair_data(frame, "train", 64, (3,), truth=ground_truth_files(cohort), progress=False)
    config = load_flow_config(None, {**TINY, "data": {**TINY["data"], "spatial_prob": 1.0},
                                     "loss": {"supervised_weight": 1.0}})
    batch = PairSampler(data, config.data, 3, with_truth=True)(torch.Generator().manual_seed(2))
    valid = batch["valid"]
    assert valid.shape == (3, 1, 64, 64) and set(valid.unique().tolist()) <= {0.0, 1.0}
    assert 0.2 < float(valid.mean()) < 0.9  # the sector, moved with the frames
    assert float(batch["source"][valid == 0].abs().mean()) < 0.02  # black outside the sector
    torch.manual_seed(0)
    model = build_ofnet(config.model, 64)
    _, parts = flow_loss(model, batch, 0, config.loss)
    zero = losses.endpoint_error(torch.zeros_like(batch["flow"]), batch["flow"], valid)
    assert parts["epe"] == pytest.approx(float(zero), rel=1e-5)  # zero heads at start; measured in the sector


def _dark_moving_pair(size: int = 64, batch: int = 4):
    """Dark speckle-like frames (mean grey ~0.07, as real echo) in a disc; a smooth patch inside moves by
    up to 1.8 px, the rim and the black outside stay still, so most pixels have exactly zero flow."""
    g = torch.Generator().manual_seed(0)
    texture = torch.nn.functional.avg_pool2d(torch.rand(batch, 1, size, size, generator=g), 3, 1, 1)
    texture = (((texture - texture.mean()) * 3 + 0.5).clamp(0, 1) * 0.15)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    radius2 = (xx - size / 2) ** 2 + (yy - size / 2) ** 2
    valid = (radius2 < (0.4 * size) ** 2).float()[None, None].expand(batch, 1, size, size)
    shift = torch.tensor([1.5, -1.0]).view(1, 2, 1, 1) * torch.tensor([1.0, -1.0, 0.5, -0.5][:batch]).view(-1, 1, 1, 1)
    flow = torch.nn.functional.avg_pool2d(shift * (radius2 < (0.28 * size) ** 2).float(), 5, 1, 2)
    return {"source": texture * valid, "target": warp(texture, flow) * valid, "flow": flow, "valid": valid}


@pytest.mark.parametrize("weight", [0.05, 1.0])
def test_supervised_term_alone_teaches_a_tiny_ofnet_the_known_flow(weight):
    """Regression (issue 18: the supervised realistic run ended exactly at zero flow): with the
    photometric and smoothness terms off, the supervised EPE alone must move a tiny OF-net well below
    the zero flow's EPE on a pair with a known shift: a target of zeros, a sign or scale error, a mask
    that excludes everything or an ignored weight all leave it at zero flow."""
    pair = _dark_moving_pair()
    config = load_flow_config(None, {"model": {**TINY_MODEL, "normalize_input": True},
                                     "loss": {"supervised_weight": weight, "l1_weight": 0.0, "smooth_weight": 0.0}})
    torch.manual_seed(0)
    model = build_ofnet(config.model, 64)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for step in range(40):
        loss, _ = flow_loss(model, pair, step, config.loss)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        flow = model(pair["source"], pair["target"])
    zero = losses.endpoint_error(torch.zeros_like(pair["flow"]), pair["flow"], pair["valid"]).item()
    assert losses.endpoint_error(flow, pair["flow"], pair["valid"]).item() < 0.5 * zero
    off = load_flow_config(None, {"model": {**TINY_MODEL, "normalize_input": True},
                                  "loss": {"supervised_weight": 0.0, "l1_weight": 0.0, "smooth_weight": 0.0}})
    loss, _ = flow_loss(model, pair, 0, off.loss)
    assert float(loss.detach()) == 0.0  # nothing else taught it


def test_appearance_augment_gives_one_look_per_pair(cohort):
    frame = load_manifest(cohort)
    data = load_pair_data(frame, "train", 64, (3,), truth=ground_truth_files(cohort), progress=False)
    plain = load_flow_config(None, {**TINY, "data": {**TINY["data"], "intensity_prob": 0.0, "spatial_prob": 0.0}})
    looked = load_flow_config(None, {**TINY, "data": {**TINY["data"], "intensity_prob": 0.0, "spatial_prob": 0.0,
                                                      "appearance_augment": True}})
    a = PairSampler(data, plain.data, 4)(torch.Generator().manual_seed(5))
    b = PairSampler(data, looked.data, 4)(torch.Generator().manual_seed(5))
    c = PairSampler(data, looked.data, 4)(torch.Generator().manual_seed(5))
    torch.testing.assert_close(b["source"], c["source"])  # reproducible from the generator
    assert not torch.allclose(a["source"], b["source"])
    # a frame paired with itself: the same look (gain, gamma, TGC...) for both, the noise of each its own
    sampler = PairSampler(data, looked.data, 4)
    frames = a["source"].repeat(8, 1, 1, 1)  # (32, 1, 64, 64)
    out = sampler._look({"source": frames, "target": frames.clone()}, torch.Generator().manual_seed(0))
    mean_source, mean_target = out["source"].mean(dim=(1, 2, 3)), out["target"].mean(dim=(1, 2, 3))
    torch.testing.assert_close(mean_source, mean_target, atol=0.01, rtol=0.1)
    assert float((mean_source / frames.mean(dim=(1, 2, 3))).std()) > 0.05  # looks differ between pairs
    assert not torch.allclose(out["source"], out["target"])  # noise is not a fixed pattern across the pair


def test_normalized_input_ignores_brightness_and_contrast():
    torch.manual_seed(0)
    net = build_ofnet(load_flow_config(None, {"model": {**TINY_MODEL, "normalize_input": True}}).model, 64)
    frames = torch.rand(2, 1, 64, 64) * 0.8
    for a, b in zip(net.features(frames), net.features(0.1 * frames + 0.05), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert OFNet().config.normalize_input is False  # the default keeps the earlier networks' input


def test_short_training_run_writes_a_usable_run_folder(cohort, tmp_path):
    config = load_flow_config(None, TINY)
    result = train_flow(config, cohort, tmp_path / "run", progress=False)
    assert result["steps"] == 4 and result["metric"] == "val_epe" and result["validated_on"] == "val"
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert list(log["step"]) == [2, 4]
    assert {"val_epe", "val_epe_zero", "val_photometric", "train_photo", "train_smooth"} <= set(log.columns)
    model = OFNet.from_pretrained(tmp_path / "run" / "best")
    assert model.config.sample_size == 64
    with pytest.raises(FileExistsError, match="--resume"):
        train_flow(config, cohort, tmp_path / "run", progress=False)
    longer = load_flow_config(None, {**TINY, "train": {**TINY["train"], "steps": 6}})
    assert train_flow(longer, cohort, tmp_path / "run", resume=True, progress=False)["steps"] == 6
    assert list(pd.read_csv(tmp_path / "run" / "log.csv")["step"]) == [2, 4, 6]


def test_supervised_weight_needs_ground_truth(tmp_path, cohort):
    frame = pd.read_csv(cohort)
    frame["path"] = [str(cohort.parent / p) for p in frame["path"]]
    frame["mask_path"] = [str(cohort.parent / p) if isinstance(p, str) and p else "" for p in frame["mask_path"]]
    other = tmp_path / "elsewhere.csv"
    frame.to_csv(other, index=False)
    config = load_flow_config(None, {**TINY, "loss": {"supervised_weight": 1.0}})
    with pytest.raises(ValueError, match="ground_truth.csv"):
        train_flow(config, other, tmp_path / "run", progress=False)


def test_predict_clip_flows_matches_forward(tiny_checkpoint):
    model = OFNet.from_pretrained(tiny_checkpoint).eval()
    frames = torch.rand(5, 64, 64)
    pairs = frame_pairs(5, (1, 2))
    flows = predict_clip_flows(model, frames.numpy(), pairs, batch_size=4)
    with torch.no_grad():
        direct = model(frames[pairs[:, 0], None], frames[pairs[:, 1], None]).numpy()
    assert flows.shape == (len(pairs), 2, 64, 64) and np.abs(direct).max() > 0
    np.testing.assert_allclose(flows, direct, atol=1e-5)


def test_cache_flows_is_resumable(cohort, tiny_checkpoint, tmp_path):
    out = tmp_path / "cache"
    table, skipped = cache_flows(cohort, tiny_checkpoint, out, gaps=(1, 2), progress=False)
    assert not skipped and len(table) == 4 and set(table["status"]) == {"computed"}
    first = out / table["file"].iloc[0]
    with np.load(first) as data:
        # issue 23: stored at K2F's latent resolution (pooled by 4); read back at the working size
        assert data["flows"].dtype == np.float16 and data["flows"].shape[1:] == (2, 16, 16) and int(data["pool"]) == 4
        n_frames = int(table["n_frames"].iloc[0])
        np.testing.assert_array_equal(data["pairs"], frame_pairs(n_frames, (1, 2)))
        assert str(data["clip_id"]) == table["clip_id"].iloc[0]
    assert (out / "flows.csv").exists()
    stamp = first.stat().st_mtime_ns
    broken = out / table["file"].iloc[1]
    broken.write_bytes(broken.read_bytes()[:100])  # an interrupted, incomplete file
    again, _ = cache_flows(cohort, tiny_checkpoint, out, gaps=(1, 2), progress=False)
    assert again.set_index("clip_id")["status"].to_dict() == {
        **{c: "cached" for c in table["clip_id"]}, table["clip_id"].iloc[1]: "computed"}
    assert first.stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="overwrite"):
        cache_flows(cohort, tiny_checkpoint, out, gaps=(1, 2), resume=False, progress=False)
    redo, _ = cache_flows(cohort, tiny_checkpoint, out, gaps=(1, 2), overwrite=True, progress=False)
    assert set(redo["status"]) == {"computed"}
    other_gaps, _ = cache_flows(cohort, tiny_checkpoint, out, gaps=(1,), splits=["val"], progress=False)
    assert len(other_gaps) == 1 and set(other_gaps["status"]) == {"computed"}  # different pairs: recomputed
    assert not list((out / "flows").glob(".*"))


def _parser():
    parser = argparse.ArgumentParser(prog="echokdm")
    sub = parser.add_subparsers(dest="command", required=True)
    register_train(sub)  # echokdm train, with train flow among its models
    register(sub)
    return parser


def test_cli_parsers():
    args = _parser().parse_args(["train", "flow", "--manifest", "m.csv", "--out", "run", "--steps", "5"])
    assert (args.manifest, args.out, args.steps, args.resume, args.config) == ("m.csv", "run", 5, False, None)
    args = _parser().parse_args(["flow", "m.csv", "--checkpoint", "ck", "-o", "out", "--gaps", "1", "2", "4"])
    assert args.gaps == [1, 2, 4] and args.splits is None and args.batch_size == 32
    with pytest.raises(SystemExit):
        _parser().parse_args(["flow", "m.csv", "-o", "out"])  # --checkpoint is required


def test_cli_train_and_flow_commands(cohort, tmp_path, capsys):
    config = tmp_path / "flow.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    args = _parser().parse_args(["train", "flow", "--config", str(config), "--manifest", str(cohort), "--out", str(run),
                                 "--steps", "2", "--no-progress"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "trained 2 steps" in out and "val_epe" in out
    args = _parser().parse_args(["flow", str(cohort), "--checkpoint", str(run / "best"), "-o", str(tmp_path / "flows"),
                                 "--gaps", "2", "--splits", "val", "--no-progress"])
    assert args.func(args) == 0
    assert "1 computed" in capsys.readouterr().out
    assert args.func(args) == 0
    assert "1 already cached" in capsys.readouterr().out


@pytest.mark.slow
def test_training_on_a_few_pairs_lowers_the_loss_and_beats_zero_flow(cohort):
    """The issue's check: a small OF-net trained without labels on a few phantom pairs lowers the
    photometric loss and ends closer to the exact flow than the zero flow (EPE in the sector)."""
    frame = load_manifest(cohort)
    data = load_pair_data(frame, "train", 64, (6,), truth=ground_truth_files(cohort), progress=False)
    truth = GroundTruthFlows(data)
    motion = [np.abs(truth.flow(*p)).mean() for p in data.pairs]
    chosen = data.pairs[np.argsort(motion)[-6:]]  # the pairs that move most
    src = torch.from_numpy(np.stack([data.frames[c][a] for c, a, _ in chosen]).astype(np.float32) / 255)[:, None]
    tgt = torch.from_numpy(np.stack([data.frames[c][b] for c, _, b in chosen]).astype(np.float32) / 255)[:, None]
    exact = torch.from_numpy(np.stack([truth.flow(*p) for p in chosen]))
    fan = torch.from_numpy(np.stack([truth.fan(c) for c, _, _ in chosen]).astype(np.float32))[:, None]
    config = load_flow_config(None, TINY)
    torch.manual_seed(0)
    model = build_ofnet(config.model, 64)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def photometric(flow):
        return losses.photometric_loss(src, tgt, flow, fan, l1_weight=1.0, ssim_weight=0.0).item()

    with torch.no_grad():
        start = photometric(model(src, tgt))
    for step in range(200):
        loss, _ = flow_loss(model, {"source": src, "target": tgt}, step, config.loss)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        flow = model(src, tgt)
    assert photometric(flow) < 0.97 * start
    zero_epe = losses.endpoint_error(torch.zeros_like(exact), exact, fan).item()
    assert losses.endpoint_error(flow, exact, fan).item() < zero_epe
