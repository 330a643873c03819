"""Issue 23, item 2: the OF-net flow cache at the resolution K2F diffuses (``echokdm flow --pool 4``, the
default). K2F trains on exactly the same flow code as from a full-resolution cache; full-resolution files
(written before) are still read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from echokdm.data.pairs import read_flow_file
from echokdm.models.kdm import encode_flow
from echokdm.training.flow import DEFAULT_CACHE_POOL, _cache_complete, _write_cache, cache_flows, pool_flows

CHECKPOINTS = Path(__file__).resolve().parents[2] / "echokdm" / "checkpoints"


def _flows(n: int = 3, size: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 3, (n, 2, size, size))).astype(np.float16).astype(np.float32)


def test_the_pooled_cache_gives_k2f_exactly_its_code(tmp_path):
    flows = _flows()
    pairs = np.array([[0, 1], [1, 0], [1, 2]])
    _write_cache(tmp_path / "c.npz", flows, pairs, "c", 16, (32, 32), "ofnet", pool=4)
    with np.load(tmp_path / "c.npz") as data:
        stored = data["flows"]
        assert stored.shape == (3, 2, 4, 4) and stored.dtype == np.float16 and int(data["pool"]) == 4
    read_pairs, read = read_flow_file(tmp_path / "c.npz")
    assert read.shape == (3, 2, 16, 16) and np.array_equal(read_pairs, pairs)
    code = encode_flow(torch.from_numpy(read.astype(np.float32)), 4, 1.0).numpy()
    np.testing.assert_array_equal(code, stored.astype(np.float32))  # bit for bit what K2F is given
    full = encode_flow(torch.from_numpy(flows), 4, 1.0).numpy()  # from the full-resolution flows
    np.testing.assert_allclose(code, full, rtol=2**-10, atol=1e-3)  # float16 rounding only
    # a coarser K2F latent (downsample 8 of a pool-4 cache) is the same average too
    np.testing.assert_allclose(encode_flow(torch.from_numpy(read.astype(np.float32)), 8, 1.0).numpy(),
                               encode_flow(torch.from_numpy(flows), 8, 1.0).numpy(), atol=2e-3)
    assert _cache_complete(tmp_path / "c.npz", pairs, 16, pool=4)
    assert not _cache_complete(tmp_path / "c.npz", pairs, 16, pool=1)  # another layout: recomputed
    with pytest.raises(ValueError, match="pooled"):
        pool_flows(_flows(size=18), 4)


def test_full_resolution_cache_files_are_still_read(tmp_path):
    flows = _flows(seed=1)
    pairs = np.array([[0, 1], [1, 0], [0, 2]])
    path = tmp_path / "old.npz"
    np.savez_compressed(path, format_version=np.int64(1), flows=flows.astype(np.float16), pairs=pairs.astype(np.int32),
                        size=np.int64(16), source_hw=np.array([16, 16]), clip_id=np.str_("old"),
                        checkpoint=np.str_("ofnet"))  # the layout before issue 23: no pool
    read_pairs, read = read_flow_file(path)
    np.testing.assert_array_equal(read, flows.astype(np.float16))
    assert _cache_complete(path, read_pairs, 16, pool=1) and not _cache_complete(path, read_pairs, 16, pool=4)


def test_the_command_default_is_the_library_default():
    from echokdm.cli import build_parser
    from echokdm.cli.flow import DEFAULT_CACHE_POOL as command_default

    assert command_default == DEFAULT_CACHE_POOL == 4
    args = build_parser().parse_args(["flow", "m.csv", "--checkpoint", "x", "-o", "out"])
    assert args.pool == 4


@pytest.mark.slow
def test_a_pooled_cache_is_the_pooled_full_cache_and_far_smaller(tmp_path):
    from echokdm.data.phantom.export import write_cohort

    write_cohort(tmp_path / "cohort", 2, "nifti", seed=5, fps=20.0, n_beats=1.0, progress=False)
    manifest = tmp_path / "cohort" / "manifest.csv"
    checkpoint = CHECKPOINTS / "ofnet_phantom_112"
    full, _ = cache_flows(manifest, checkpoint, tmp_path / "full", gaps=(1,), pool=1, progress=False)
    pooled, _ = cache_flows(manifest, checkpoint, tmp_path / "pooled", gaps=(1,), progress=False)
    sizes = [0, 0]
    for relative in full["file"]:
        with np.load(tmp_path / "full" / relative) as a, np.load(tmp_path / "pooled" / relative) as b:
            assert b["flows"].shape[-2:] == (28, 28) and a["flows"].shape[-2:] == (112, 112)
            np.testing.assert_allclose(b["flows"].astype(np.float32),
                                       pool_flows(a["flows"].astype(np.float32), 4), atol=5e-3)
        sizes[0] += (tmp_path / "full" / relative).stat().st_size
        sizes[1] += (tmp_path / "pooled" / relative).stat().st_size
    assert sizes[1] * 8 < sizes[0]
