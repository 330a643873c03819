"""Pipeline folders: diffusers' layout (model_index.json), the packaged pipelines giving the frames
they gave before issue 19, folders of the old layout (kdm_pipeline.json) loaded and converted."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from echokdm.pipelines import FlowToImagePipeline, KDMOutput, KDMPipeline, KeypointToFlowPipeline
from echokdm.pipelines.convert import convert_pipeline_folder, main
from echokdm.pipelines.kdm import saved_adapter
from echokdm.pretrained import available, pretrained_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import tiny_pipeline

#: Inputs and outputs of the packaged pipelines, computed with the code before issue 19
#: (echokdm.pipelines.kdm's own save/load, kdm_pipeline.json folders): frames[:, ::4, ::4],
#: flows[:, :, ::8, ::8], and the means of the full arrays.
FIXTURE = Path(__file__).resolve().parent / "data" / "packaged_kdm_seed0.npz"
CALLS = {"kdm_phantom_112": "gamma", "kdm_phantom_classic_112": "per_frame"}


def _run(pipe, data, mode):
    return pipe(data["source"].astype(np.float32) / 255, data["source_keypoints"], data["target_keypoints"], mode=mode,
                k=3, num_inference_steps=6, generator=torch.Generator().manual_seed(0), progress=False)


def _save_old_layout(pipe: KDMPipeline, folder: Path) -> Path:
    """``pipe`` saved as the pipelines saved themselves before issue 19."""
    for name in ("k2f", "f2i", "vae", "scheduler"):
        getattr(pipe, name).save_pretrained(folder / name)
    (folder / "kdm_pipeline.json").write_text(json.dumps({"adapter": pipe.adapter, "f2i_uses_flow": pipe.use_flow}))
    return folder


@pytest.mark.parametrize("name", [
    "kdm_phantom_112", pytest.param("kdm_phantom_classic_112", marks=pytest.mark.slow)])
def test_packaged_pipeline_gives_the_frames_it_gave_before(name):
    if name not in available():
        pytest.skip(f"{name} is not installed")
    folder = pretrained_path(name)
    assert (folder / "model_index.json").is_file() and not (folder / "kdm_pipeline.json").exists()
    pipe = KDMPipeline.from_pretrained(name)
    assert pipe.k2f.dtype == torch.float32 and pipe.adapter == "echo" and pipe.use_flow
    with np.load(FIXTURE) as data:
        out = _run(pipe, data, CALLS[name])
        np.testing.assert_allclose(out.frames[:, ::4, ::4], data[f"{name}_frames"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(out.flows[:, :, ::8, ::8], data[f"{name}_flows"], rtol=0, atol=1e-6)
        assert out.frames.astype(np.float64).mean() == pytest.approx(float(data[f"{name}_frames_mean"]), abs=1e-7)
        assert np.abs(out.flows.astype(np.float64)).mean() == pytest.approx(float(data[f"{name}_flows_mean"]), abs=1e-6)
    assert out.frames.shape == (2, 112, 112) and out.flows.shape == (2, 2, 112, 112)


def test_save_writes_diffusers_layout_and_return_dict(tmp_path, clip):
    pipe = tiny_pipeline()
    pipe.adapter = "face"  # a setting changed after construction is saved
    pipe.save_pretrained(tmp_path / "kdm")
    index = json.loads((tmp_path / "kdm" / "model_index.json").read_text())
    assert index["_class_name"] == "KDMPipeline" and index["adapter"] == "face" and index["use_flow"] is True
    assert index["k2f"] == ["echokdm.models.kdm", "ConditionalUNet"] and index["vae"] == ["diffusers", "AutoencoderKL"]
    assert (tmp_path / "kdm" / "f2i" / "diffusion_pytorch_model.safetensors").is_file()
    assert not (tmp_path / "kdm" / "kdm_pipeline.json").exists() and saved_adapter(tmp_path / "kdm") == "face"
    loaded = KDMPipeline.from_pretrained(tmp_path / "kdm")
    assert loaded.adapter == "face" and loaded.flow_pipe.adapter == "face"
    frame, kp = clip.frames[0], clip.keypoints[0]
    kw = dict(k=1, num_inference_steps=2, progress=False, mode="per_frame", generator=None)
    echo = tiny_pipeline()
    out = echo(frame, kp, kp + 1, **{**kw, "generator": torch.Generator().manual_seed(0)})
    as_tuple = echo(frame, kp, kp + 1, return_dict=False, **{**kw, "generator": torch.Generator().manual_seed(0)})
    assert isinstance(out, KDMOutput) and isinstance(as_tuple, tuple) and as_tuple[2] is None
    np.testing.assert_array_equal(as_tuple[0], out.frames)
    np.testing.assert_array_equal(out["frames"], out.frames)


def test_old_layout_folder_loads_with_a_warning_and_the_same_frames(tmp_path, clip):
    pipe = tiny_pipeline()
    old = _save_old_layout(pipe, tmp_path / "old")
    with pytest.warns(FutureWarning, match="old layout.*python -m echokdm.pipelines.convert"):
        loaded = KDMPipeline.from_pretrained(old)
    pipe.save_pretrained(tmp_path / "new")
    new = KDMPipeline.from_pretrained(tmp_path / "new")
    run = lambda p: p(clip.frames[0], clip.keypoints[0], clip.keypoints[[3, 6]], mode="gamma", k=2,  # noqa: E731
                      num_inference_steps=3, progress=False, generator=torch.Generator().manual_seed(2))
    np.testing.assert_array_equal(run(loaded).frames, run(new).frames)
    with pytest.warns(FutureWarning):
        assert isinstance(KeypointToFlowPipeline.from_pretrained(old), KeypointToFlowPipeline)


def test_convert_keeps_float16_weights_byte_for_byte(tmp_path):
    pipe = tiny_pipeline(use_flow=False)
    for name in ("k2f", "f2i", "vae"):
        getattr(pipe, name).half()
    old = _save_old_layout(pipe, tmp_path / "old")
    assert main([str(old), str(tmp_path / "new")]) == 0
    new = tmp_path / "new"
    assert (new / "model_index.json").is_file() and not (new / "kdm_pipeline.json").exists()
    for name in ("k2f", "f2i", "vae"):
        weights = f"{name}/diffusion_pytorch_model.safetensors"
        assert (new / weights).read_bytes() == (old / weights).read_bytes(), name
    loaded = KDMPipeline.from_pretrained(new)
    assert loaded.use_flow is False and loaded.f2i.dtype == torch.float32
    assert isinstance(FlowToImagePipeline.from_pretrained(new), FlowToImagePipeline)
    with pytest.raises(ValueError, match="already exists"):
        convert_pipeline_folder(old, new)
    with pytest.raises(ValueError, match="not a pipeline folder of the old layout"):
        convert_pipeline_folder(new, tmp_path / "again")
    in_place = shutil.copytree(old, tmp_path / "in_place")
    convert_pipeline_folder(in_place, in_place)
    assert (in_place / "model_index.json").is_file() and not (in_place / "kdm_pipeline.json").exists()


def test_model_cpu_offload_hooks_give_the_same_frames(clip):
    """``enable_model_cpu_offload`` (here with the CPU as the execution device, to run the hooks without a
    GPU): Ψ (``embed``) and the autoencoder go through accelerate's hooks like ``forward``."""
    pytest.importorskip("accelerate")
    pipe = tiny_pipeline()
    run = lambda: pipe(clip.frames[0], clip.keypoints[0], clip.keypoints[[3, 6]], mode="per_frame", k=2,  # noqa: E731
                       num_inference_steps=3, progress=False, generator=torch.Generator().manual_seed(0))
    plain = run()
    pipe.enable_model_cpu_offload(device="cpu")
    np.testing.assert_array_equal(run().frames, plain.frames)
