"""The four notebooks, built from their jupytext sources (``notebooks/<stem>.py``) and executed top to bottom
with small parameters (as CI runs them), write what they say they write; the stored notebooks are exactly what
``notebooks/build.py`` makes from the sources, without outputs.

Each notebook's ``parameters`` cell is replaced by its own source followed by the small values
(every overridden name must be a parameter of the notebook). Notebooks 01 and 04 get a tiny random
KDM pipeline built here, so CI does not depend on the packaged weights; 01 uses the packaged
``kdm_phantom_112`` (with few steps) when it is installed.
"""

import ast
import functools
import importlib.util
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
STEMS = ("01_quickstart", "02_keypoints_and_ef", "03_train_and_evaluate", "04_synthetic_cohort")
LPIPS_WEIGHTS = ROOT.parent / "shared" / "weights" / "lpips"  # ../shared/weights/lpips in CI (DESIGN.md)
SIZE = 32


@functools.cache
def _build_module():
    """``notebooks/build.py``: ``build(stem)`` reads ``notebooks/<stem>.py`` with jupytext."""
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "a notebook has exactly one cell tagged 'parameters'"
    return cells[0]


def _assigned_names(source: str) -> set[str]:
    return {target.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


def _execute(stem: str, folder: Path, **values):
    """Run notebook ``stem`` in ``folder`` with the parameters ``values``; the executed notebook."""
    from nbclient import NotebookClient

    nb = _build_module().build(stem)  # from the source, as stored (test_stored_notebooks_are_the_built_ones)
    cell = _parameters_cell(nb)
    unknown = set(values) - _assigned_names(cell.source)
    assert not unknown, f"{stem}: not parameters of the notebook: {sorted(unknown)}"
    cell.source += "\n\n# CI: small values\n" + "\n".join(f"{name} = {value!r}" for name, value in values.items())
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    return nb


def _outputs(nb, mime: str) -> list[str]:
    """Every ``mime`` output (display data and execute results) of the executed notebook."""
    return [o.data[mime] for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type in ("display_data", "execute_result") and mime in o.data]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """``(pipeline folder, segmentation folder)`` of a tiny random KDM pipeline and segmentation net at 32 px."""
    import torch

    from echokdm.echo.segmentation import LVSegmentationNet
    from echokdm.models.kdm import ConditionalUNet, make_autoencoder
    from echokdm.pipelines import KDMPipeline

    def unet(sample_channels, condition_channels):
        torch.manual_seed(0)
        return ConditionalUNet(sample_channels=sample_channels, condition_channels=condition_channels,
                               condition_embed_channels=8, downsample=4, sample_size=SIZE // 4,
                               block_out_channels=(16, 32), attention_levels=(False, True), layers_per_block=1,
                               norm_num_groups=8, flow_scale=4.0).eval()

    root = tmp_path_factory.mktemp("tiny_models")
    torch.manual_seed(0)
    vae = make_autoencoder(block_out_channels=(8, 16, 16), latent_channels=4, sample_size=SIZE, norm_num_groups=8)
    KDMPipeline(unet(2, 7), unet(4, 6), vae.eval()).save_pretrained(root / "pipeline")
    LVSegmentationNet(channels=(4, 8), num_res_units=0, sample_size=SIZE).save_pretrained(root / "segmentation")
    return root / "pipeline", root / "segmentation"


def test_stored_notebooks_are_the_built_ones_without_outputs():
    build = _build_module()
    assert build.STEMS == STEMS and tuple(sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))) == STEMS
    for stem in STEMS:
        path, nb = NOTEBOOKS / f"{stem}.ipynb", build.build(stem)
        assert path.read_text() == build.notebook_text(nb), f"{path}: run python notebooks/build.py"
        stored = nbformat.read(path, as_version=4)
        nbformat.validate(stored)
        assert stored.metadata.kernelspec.name == "python3"
        assert stored.cells[0].cell_type == "markdown" and "Run time" in stored.cells[0].source
        assert stored.cells[1] is _parameters_cell(stored), f"{stem}: the second cell holds the parameters"
        assert {"QUICK", "OUT"} <= _assigned_names(stored.cells[1].source)
        assert "OVERWRITE" not in _assigned_names(stored.cells[1].source)  # a rerun needs no flag
        assert "OUT = None" in stored.cells[1].source
        assert f'output_folder("{stem}", quick=QUICK, out=OUT)' in "".join(c.source for c in stored.cells)
        for cell in stored.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{stem}: stored with outputs"
                compile(cell.source.replace("%matplotlib inline", ""), f"{stem}:{cell.id}", "exec")
    assert build.main(["--check"]) == 0


def test_notebooks_use_only_public_names():
    """No notebook imports a private name or module of echokdm (``_x``)."""
    for stem in STEMS:
        nb = _build_module().build(stem)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            tree = ast.parse(cell.source.replace("%matplotlib inline", ""))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("echokdm"):
                    names = [node.module, *(a.name for a in node.names)]
                    assert not any(part.startswith("_") for n in names for part in n.split(".")), (stem, names)


@pytest.mark.slow
def test_01_quickstart(tmp_path, tiny_models):
    from echokdm.geometry import simpson_volume
    from echokdm.io import read_dicom, read_video
    from echokdm.io.keypoint_files import read_keypoints_csv
    from echokdm.pretrained import available

    if "kdm_phantom_112" in available():  # the packaged demo checkpoints, few steps
        nb = _execute("01_quickstart", tmp_path, QUICK=True)
    else:
        pipeline, segmentation = tiny_models
        nb = _execute("01_quickstart", tmp_path, QUICK=True, PIPELINE=str(pipeline), SEGMENTATION=str(segmentation),
                      SIZE=SIZE)
    out = tmp_path / "notebook_outputs" / "01_quickstart-quick"
    truth = pd.read_csv(out / "phantom" / "ground_truth.csv").iloc[0]
    ed = [int(f) for f in truth["ed_frames"].split()]
    new_ef_frames = round(60.0 / truth["heart_rate_bpm"] * truth["fps"])
    own = read_keypoints_csv(out / "loops" / "own_beat_keypoints.csv")
    assert abs(len(own) - (ed[1] - ed[0])) <= 1  # one whole beat of the patient
    for stem, n_frames in (("own_beat", len(own)), ("new_ef", new_ef_frames)):
        video = read_video(out / "loops" / f"{stem}.mp4")
        assert video.n_frames == n_frames and video.fps == pytest.approx(truth["fps"], rel=0.01)
        assert read_video(out / "loops" / f"{stem}.gif").n_frames == n_frames
        dicom = read_dicom(out / "loops" / f"{stem}.dcm")
        assert dicom.n_frames == n_frames and dicom.spacing_mm is not None
    volumes = simpson_volume(read_keypoints_csv(out / "loops" / "new_ef_keypoints.csv"))
    keypoint_ef = 100 * (volumes.max() - volumes.min()) / volumes.max()
    # the written keypoints are the trajectory the EF control settled on: NEW_EF (30) or more, as reported
    reported = [html for html in _outputs(nb, "text/html") if "EF of the keypoints (%)" in html]
    numbers = [float(x) for x in re.findall(r"\d+\.\d+", reported[0])] if reported else []
    assert any(abs(x - keypoint_ef) < 0.15 for x in numbers), (keypoint_ef, numbers)
    assert keypoint_ef >= 30.0 - 0.5
    side = read_video(out / "loops" / "own_beat_side_by_side.mp4")
    assert side.n_frames == len(own) and side.width > 1.5 * side.height  # real | generated, under a label band
    for name in ("real_cine", "keypoints", "frames_side_by_side", "volume_curves"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000, name
    assert len(_outputs(nb, "image/png")) >= 5
    assert any("EF target (%)" in html for html in _outputs(nb, "text/html"))


@pytest.mark.slow
def test_02_keypoints_and_ef(tmp_path):
    nb = _execute("02_keypoints_and_ef", tmp_path, QUICK=True)
    out = tmp_path / "notebook_outputs" / "02_keypoints_and_ef-quick"
    clips = pd.read_csv(out / "ef_clips.csv")
    assert sorted(clips["dataset"].unique()) == ["phantom-echonet", "phantom-nifti"]
    assert (clips.groupby("dataset").size() == 3).all()  # QUICK: 3 patients, each read from both formats
    assert clips["ef"].notna().all() and (clips["ef_error"].abs() < 4.0).all()  # vs the phantom's true EF
    masks = clips[clips["dataset"] == "phantom-nifti"]
    assert (masks["method"] == "cardiac cycle").all() and (masks["n_beats"] >= 1).all()
    agreement = pd.read_csv(out / "ef_agreement.csv")
    assert list(agreement["dataset"]) == ["phantom-echonet", "phantom-nifti", "all"] and (agreement["n"] > 0).all()
    for name in ("ef_bland_altman.png", "ef_scatter.png", "figures/mask_keypoints.png",
                 "figures/tracing_keypoints.png", "figures/volume_curve.png"):
        assert (out / name).stat().st_size > 5_000, name
    assert len(_outputs(nb, "image/png")) >= 5


@pytest.mark.slow
def test_03_train_and_evaluate(tmp_path):
    lpips = {"LPIPS_NETS": ("alex",), "LPIPS_BACKBONE": str(LPIPS_WEIGHTS)} if LPIPS_WEIGHTS.is_dir() \
        else {"LPIPS_NETS": ()}
    nb = _execute("03_train_and_evaluate", tmp_path, QUICK=True, **lpips)
    out = tmp_path / "notebook_outputs" / "03_train_and_evaluate-quick"
    for folder in ("pipeline", "pipeline_noflow"):
        assert (out / "run" / folder / "model_index.json").is_file(), folder
    table3 = (out / "evaluation" / "table3.md").read_text()
    for label in ("| KDM |", "| w/o K2F |", "| w/o F2I |", "| TPS warp |", "| no edit |"):
        assert label in table3, label
    assert any("| KDM |" in text for text in _outputs(nb, "text/markdown"))  # shown as Markdown
    summary = pd.read_csv(out / "evaluation" / "summary.csv")
    assert {"kdm", "wo_k2f", "wo_f2i", "tps", "no_edit"} <= set(summary["method"])
    kdm = summary.set_index("method").loc["kdm"]
    assert kdm["n_patients"] == 1 and np.isfinite(kdm["mse"])  # QUICK: one test patient
    if "LPIPS_BACKBONE" in lpips:
        assert np.isfinite(kdm["lpips_alex"])
    for name in ("training_losses", "methods", "test_clip"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 5_000, name


@pytest.mark.slow
def test_04_synthetic_cohort(tmp_path, tiny_models):
    from echokdm.io import read_echonet_filelist

    pipeline, _ = tiny_models
    nb = _execute("04_synthetic_cohort", tmp_path, QUICK=True, PIPELINE=str(pipeline), SEGMENTATION=False,
                  SIZE=SIZE, TRAINING_PATIENTS=3)
    out = tmp_path / "notebook_outputs" / "04_synthetic_cohort-quick"
    cohort = pd.read_csv(out / "synthetic_echonet" / "cohort.csv")
    assert len(cohort) == 4 and cohort["source_patient_id"].nunique() == 2  # QUICK: 4 loops from 2 patients
    assert cohort["ef_target"].between(20.0, 70.0).all() and cohort["ef_achieved"].isna().all()  # EF_RANGE, no model
    np.testing.assert_array_equal(cohort["n_frames"], np.round(60.0 / cohort["heart_rate_bpm"] * 10.0))  # 10 fps
    filelist = read_echonet_filelist(out / "synthetic_echonet")
    assert list(filelist["FileName"]) == [f"{name}.avi" for name in cohort["loop"]]
    assert (filelist["FrameHeight"] == SIZE).all()
    np.testing.assert_allclose(filelist["EF"], cohort["ef_target"], atol=0.01)
    read_back = pd.read_csv(out / "read_back.csv")
    np.testing.assert_array_equal(read_back["frames read"], cohort["n_frames"])
    np.testing.assert_allclose(read_back["EF from the tracings"], cohort["ef_target"], atol=0.5)
    memorisation = pd.read_csv(out / "synthetic_echonet" / "memorisation.csv").iloc[0]
    assert memorisation["n_generated"] == (cohort["n_frames"] - 1).sum()  # the real source frames left out
    assert memorisation["n_held_out"] > 0 and 0.0 <= memorisation["fraction_closer"] <= 1.0
    for name in ("volume_curves", "ef_frames"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 5_000, name
    efs = [float(line.split()[1]) for text in _outputs(nb, "text/plain") for line in text.splitlines()[1:4]
           if "EF requested" in text]
    assert efs == [25.0, 45.0, 65.0]  # part 1: one ED frame, three EFs
    # part 4: a real stand-in with a test split, a cohort from its train half only, the utility run
    real = pd.read_csv(out / "utility_real" / "manifest.csv")
    assert sorted(real["split"].unique()) == ["test", "train"] and (real["split"] == "test").sum() == 3  # QUICK: 6
    utility_cohort = pd.read_csv(out / "utility_cohort" / "cohort.csv")
    assert len(utility_cohort) == 4
    train_patients = set(real.loc[real["split"] == "train", "patient_id"])
    assert set(utility_cohort["source_patient_id"]) <= train_patients  # the generator never saw a test patient
    utility = pd.read_csv(out / "utility" / "utility.csv")
    assert set(utility["task"]) == {"seg", "ef"}
    assert {"real", "synthetic", "real+synthetic"} <= set(utility["training_set"])
    assert set(utility.loc[utility["training_set"] == "real", "n_real_patients"]) == {2, 3}  # (2, "all") of 3
    assert (utility["n_test_patients"] == 3).all() and utility["value"].notna().any()
    assert (out / "utility" / "plots" / "utility.png").stat().st_size > 5_000
    assert any("| training set |" in text and "| synthetic |" in text for text in _outputs(nb, "text/markdown"))
    assert len(_outputs(nb, "image/png")) >= 5
