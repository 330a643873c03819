"""KDM overfitted on ONE phantom pair reproduces it (the issue's sanity check that the stage losses
and the inference pipelines agree): K2F's DDIM flow matches the pair's flow, and F2I started from
pure noise (k = num_inference_steps) matches the target frame, where untrained models do not.

The stages run through their real code in echokdm.training.kdm (losses, Trainer, best/ on EMA
weights) on a one-pair bank that serves as both train and validation set.
"""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from echokdm.adapters.echo import render_keypoints
from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.models.kdm import ConditionalUNet
from echokdm.pipelines import FlowToImagePipeline, KeypointToFlowPipeline
from echokdm.pipelines.kdm import default_scheduler
from echokdm.training.kdm import PairBank, _autoencoder_stage, _f2i_stage, _k2f_stage, _unet, load_kdm_config
from echokdm.training.run import RunFolder

SIZE = 32
# 300 training timesteps: with the linear schedule the last step keeps ~5 % of the signal, and a tiny
# model learns its single sample within a few hundred steps (at 1000, the first DDIM steps amplify
# the ε error of a barely trained model ~100x and single noise draws go astray).
TIMESTEPS = 300
STEPS = 20
DRAWS = 4  # noise draws per check (one batched pipeline call)
UNET = {"block_out_channels": [16, 32], "layers_per_block": 1, "attention_levels": [False, True],
        "condition_embed_channels": 8, "norm_num_groups": 8, "flow_scale": 0.4}  # flows here are ~1.5 px at most


def _loop(steps, ema_decay=None):
    return {"steps": steps, "batch_size": 8, "lr": 0.003, "ema_decay": ema_decay, "val_every": steps,
            "checkpoint_every": steps, "seed": 0, "device": "cpu"}


CONFIG = load_kdm_config(None, {
    "data": {"size": SIZE, "val_pairs": 1},
    "autoencoder": {"model": {"block_out_channels": [8, 16, 16], "norm_num_groups": 8},
                    "loss": {"lpips": 0.0}, "train": _loop(300)},
    "k2f": {"model": UNET, "train": _loop(500, ema_decay=0.98)},
    "f2i": {"model": UNET, "train": _loop(500, ema_decay=0.98)},
    "sampling": {"num_train_timesteps": TIMESTEPS, "num_inference_steps": STEPS, "k": STEPS,
                 "val_inference_steps": STEPS},
})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Deterministic and fast on a shared 2-core machine (two threads there are slower, not faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bank():
    """One pair of a phantom clip: end-systole → end-diastole (its largest motion), as a PairBank."""
    clip = simulate_clip(sample_patient(0, 0), n_frames=12, size=SIZE, fps=25.0)
    source, target = int(clip.es_frames[0]), int(clip.ed_frames[0])
    kp = clip.keypoints[[source, target]].astype(np.float32)  # (2, 40, 2)
    renders = np.stack([np.round(render_keypoints(k, (SIZE, SIZE)) * 255) for k in kp]).astype(np.uint8)
    return PairBank(frames=clip.frames[[source, target]].astype(np.float32), keypoints=kp, renders=renders,
                    pairs=np.array([[0, 1]]), flows=clip.flow(source, target)[None].astype(np.float16),
                    patient_ids=[clip.patient.patient_id], skipped=[])


def _repeat(array, n=DRAWS):
    return np.repeat(np.asarray(array)[None], n, axis=0)


def _k2f_flows(model, bank):
    """``DRAWS`` generated flows ``(DRAWS, 2, S, S)`` for the pair (different noise each)."""
    pipe = KeypointToFlowPipeline(model.eval(), default_scheduler(TIMESTEPS))
    return pipe(_repeat(bank.frames[0]), _repeat(bank.keypoints[0]), _repeat(bank.keypoints[1]),
                num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0))


def _flow_scores(flows, truth):
    """Median over draws of the EPE / mean |truth| and of the cosine similarity where the wall moves."""
    epe = np.linalg.norm(flows - truth, axis=1).mean(axis=(1, 2))  # (DRAWS,)
    moving = np.linalg.norm(truth, axis=0) > 0.3  # (S, S): the moving LV region
    cosine = [(f[:, moving] * truth[:, moving]).sum() / np.linalg.norm(f[:, moving]) / np.linalg.norm(truth[:, moving])
              for f in flows]
    return float(np.median(epe)) / float(np.linalg.norm(truth, axis=0).mean()), float(np.median(cosine))


@pytest.mark.slow
def test_k2f_overfitted_on_one_pair_reproduces_its_flow(bank, tmp_path):
    torch.manual_seed(0)
    _k2f_stage(CONFIG, bank, bank, RunFolder(tmp_path / "k2f", CONFIG), resume=False, progress=False)
    truth = bank.flows[0].astype(np.float32)  # (2, S, S), max ~1.5 px
    trained = _flow_scores(_k2f_flows(ConditionalUNet.from_pretrained(tmp_path / "k2f" / "best"), bank), truth)
    torch.manual_seed(0)
    untrained = _flow_scores(_k2f_flows(_unet(CONFIG.k2f, 2, 7, SIZE, 4), bank), truth)
    # relative EPE: predicting no motion scores 1.0; the K2F latent itself (4x average-pooled) costs ~0.37
    assert trained[0] < 0.8 and trained[1] > 0.9, trained
    assert untrained[0] > 1.0 and untrained[1] < 0.5, untrained


def _f2i_frames(model, vae, bank):
    """``DRAWS`` frames ``(DRAWS, S, S)`` from pure noise (k = num_inference_steps)."""
    pipe = FlowToImagePipeline(model.eval(), vae, default_scheduler(TIMESTEPS))
    return pipe(_repeat(bank.frames[0]), _repeat(bank.keypoints[1]), _repeat(bank.flows[0].astype(np.float32)),
                k=STEPS, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0))


@pytest.mark.slow
def test_f2i_overfitted_on_one_pair_reproduces_its_target(bank, tmp_path):
    torch.manual_seed(0)
    autoencoder = _autoencoder_stage(CONFIG, bank, bank, RunFolder(tmp_path / "vae", CONFIG), False, False)
    assert autoencoder["best"] > 30.0  # PSNR (dB) of the two frames through the autoencoder
    vae = AutoencoderKL.from_pretrained(tmp_path / "vae" / "best").eval()
    torch.manual_seed(0)
    _f2i_stage(CONFIG, bank, bank, RunFolder(tmp_path / "f2i", CONFIG), vae, True, False, False)
    target = bank.frames[1]
    copy_source = float(((bank.frames[0] - target) ** 2).mean())  # MSE of "no edit"
    trained = ((_f2i_frames(ConditionalUNet.from_pretrained(tmp_path / "f2i" / "best"), vae, bank) - target) ** 2)
    torch.manual_seed(0)
    untrained = ((_f2i_frames(_unet(CONFIG.f2i, 4, 6, SIZE, 4), vae, bank) - target) ** 2)
    trained_mse, untrained_mse = trained.mean(axis=(1, 2)), untrained.mean(axis=(1, 2))  # (DRAWS,)
    assert trained_mse.max() < 0.5 * copy_source, (trained_mse, copy_source)
    assert untrained_mse.min() > copy_source, (untrained_mse, copy_source)
    assert trained_mse.max() < 0.1 * untrained_mse.min()
