"""Write the four echokdm notebooks from this script, so they are reproducible and reviewable.

    python notebooks/_build.py            # rewrite notebooks/0*.ipynb
    python notebooks/_build.py --check    # exit 1 if a stored notebook differs from this script

The notebooks are stored without outputs, with fixed cell ids (``<notebook>-<index>``) so that a
rebuild changes nothing unless a cell changed. Every notebook starts with a markdown cell (what it
shows, run time) and a code cell tagged ``parameters`` that holds every knob; CI
(``tests/test_notebooks.py``) replaces that cell with small values and executes the notebook.
Notebooks call only the public API of echokdm: no logic lives here that the package lacks.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
PARAMETERS_TAG = "parameters"

# The output-folder block every notebook runs after its parameters (echokdm.notebook.output_folder):
# its own folder per notebook and QUICK, emptied on a rerun; a folder it did not make is never touched.
_PREPARE_OUT = '''
from echokdm.notebook import output_folder

OUT = output_folder("{notebook}", quick=QUICK, out=OUT)  # the notebook's own folder, emptied by a rerun
(OUT / "figures").mkdir()
'''.strip()

_PREPARE_MARK = re.compile(r"# <prepare OUT: (\w+)>")


def _text(source: str) -> str:
    """Dedented source with the shared snippets filled in."""
    text = textwrap.dedent(source).strip("\n")
    return _PREPARE_MARK.sub(lambda m: _PREPARE_OUT.replace("{notebook}", m.group(1)), text)


def md(source: str):
    return nbformat.v4.new_markdown_cell(_text(source))


def code(source: str):
    return nbformat.v4.new_code_cell(_text(source))


def parameters(source: str):
    cell = code(source)
    cell.metadata["tags"] = [PARAMETERS_TAG]
    return cell


def _notebook(stem: str, cells: list) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for index, cell in enumerate(cells):
        cell.id = f"{stem[:2]}-{index:02d}"
    nb.cells = cells
    return nb


# ---------------------------------------------------------------------------------------------
# 01 quickstart
# ---------------------------------------------------------------------------------------------


def quickstart() -> list:
    return [
        md("""
        # 01 · Quickstart: from an echo cine to a generated heart beat

        The echokdm demo, step by step:

        1. read a **real ultrasound cine** (the one that ships with pydicom) and look at its frames;
        2. simulate a **held-out phantom patient** (one the demo KDM never saw in training), derive its 40
           left-ventricle (LV) keypoints from the masks and draw them;
        3. load the packaged **KDM pipeline** (`kdm_phantom_112`);
        4. generate, from the patient's end-diastolic (ED) frame, its **own beat** and a beat at a
           **new ejection fraction (EF)**;
        5. compare frames side by side and the **LV volume curves**: the target, and the one re-measured on
           the generated frames by the packaged segmentation model (`seg_phantom_112`);
        6. write the loops as **MP4, GIF and synthetic-marked DICOM**.

        **Run time**: about 2–3 minutes on a laptop CPU with the defaults (200 DDIM steps), seconds on a
        GPU, under a minute with `QUICK = True`. The packaged checkpoints must be installed (see
        `echokdm.pretrained`); or point `PIPELINE` / `SEGMENTATION` at your own folders.

        Everything is written under `OUT` (default `notebook_outputs/01_quickstart-full/` next to this
        notebook, `-quick` with `QUICK = True`; a rerun replaces it). Conventions: frames are `float32` in [0, 1], keypoints are `(x, y)` pixels
        (x = column, y = row), volumes are in mL.
        """),
        parameters("""
        QUICK = False        # True: fewer frames per beat and DDIM steps (shows every step, not the quality)
        PIPELINE = None      # None: the packaged demo checkpoint "kdm_phantom_112"; or a KDM pipeline folder
        SEGMENTATION = None  # None: the packaged "seg_phantom_112" if installed; False: no re-measurement; or a folder
        PATIENT_SEED = 1000  # phantom seed of the held-out patient (the demo KDM was trained on seed 0)
        SIZE = 112           # phantom frame size in pixels (the pipeline resizes to its own size and back)
        FPS = 25.0           # phantom frame rate (frames/s), also the loops' (as in `echokdm demo`)
        NEW_EF = 30.0        # EF (%) of the edited beat
        STEPS = 200          # DDIM steps (the paper's 200)
        K = 100              # F2I starts from the warped source noised to step K of STEPS
        SEED = 0             # seed of the generation noise: same seed, same loop
        OUT = None           # None: notebook_outputs/01_quickstart-quick or -full (by QUICK), replaced
                             #   by a rerun; or a new or empty folder of yours (never overwritten)
        """),
        code("""
        %matplotlib inline
        import warnings
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd
        import torch
        from IPython.display import Image, display

        import echokdm
        from echokdm.pretrained import available, pretrained_path

        if QUICK:
            FPS, STEPS, K = min(FPS, 10.0), min(STEPS, 4), min(K, 2)
        DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

        # <prepare OUT: 01_quickstart>
        print(f"echokdm {echokdm.__version__} on {DEVICE}; packaged checkpoints: {available() or 'none'}")
        print(f"outputs in {OUT.resolve()}")
        """),
        md("""
        ## 1. A real ultrasound cine

        pydicom ships a real cardiac ultrasound cine (`ybr_color`: 30 JPEG-compressed colour frames).
        `read_dicom` decodes it, converts it to gray, reads the frame rate and the pixel spacing from the
        ultrasound calibration regions, and with `crop_to_fan=True` crops it to the ultrasound fan (the
        burned-in text outside it is gone). Nothing personal is kept: the patient becomes a salted hash.
        """),
        code("""
        import pydicom.examples

        from echokdm.io import read_dicom

        with warnings.catch_warnings(record=True) as notes:
            warnings.simplefilter("always")
            real = read_dicom(pydicom.examples.get_path("ybr_color"), crop_to_fan=True)
        print(real.summary())
        for note in notes:
            print("note:", note.message)

        shown = np.linspace(0, real.n_frames - 1, 4).round().astype(int)
        fig, axes = plt.subplots(1, len(shown), figsize=(14, 3.2))
        for ax, t in zip(axes, shown):
            ax.imshow(real.frames[t], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"frame {t} (t = {t / real.fps:.2f} s)")
            ax.axis("off")
        fig.suptitle(f"real ultrasound cine, {real.height}×{real.width} px, {real.fps:.0f} fps")
        fig.savefig(OUT / "figures" / "real_cine.png", dpi=100, bbox_inches="tight")
        plt.show()
        """),
        md("""
        ## 2. A held-out phantom patient and its 40 keypoints

        Real echo datasets need registration, so the demo uses echokdm's **phantom**: simulated B-mode
        apical four-chamber cines whose LV masks, keypoints, volumes and EF are known exactly.
        `write_cohort` writes one patient (as NIfTI, with its masks) and a manifest; `read_clip` reads it
        back through the same readers as real data. `clip_keypoints` derives the 40 keypoints of every
        frame from the masks, and `cardiac_cycle` finds ED and end-systole (ES) on the Simpson volumes.
        """),
        code("""
        from echokdm.data.manifest import load_manifest, read_clip
        from echokdm.data.phantom.export import write_cohort
        from echokdm.generation import clip_keypoints
        from echokdm.geometry import cardiac_cycle, simpson_volume

        cohort = write_cohort(OUT / "phantom", n_patients=1, format="nifti", seed=PATIENT_SEED, size=SIZE, fps=FPS,
                              n_beats=2.0, style="realistic", progress=False)
        truth = cohort.ground_truth.iloc[0]  # the phantom's exact EF, volumes, heart rate
        cine = read_clip(load_manifest(OUT / "phantom" / "manifest.csv").iloc[0])
        print(cine.summary())

        keypoints = clip_keypoints(cine)  # (T, 40, 2) (x, y) px, from the mask of every frame
        volumes = simpson_volume(keypoints, cine.spacing_mm)  # (T,) mL
        cycle = cardiac_cycle(volumes, cine.fps)
        ed = int(cycle.ed_frames[0]) if cycle.n_beats else int(np.nanargmax(volumes))
        later = cycle.ed_frames[cycle.ed_frames > ed]
        next_ed = int(later[0]) if len(later) else cine.n_frames  # one whole beat: frames ed .. next_ed - 1
        print(f"ED frames {cycle.ed_frames.tolist()}, ES frames {cycle.es_frames.tolist()}")
        print(f"EF from the masks {cycle.ef_mean:.1f} % (true {truth.ef_percent:.1f} %), "
              f"heart rate {truth.heart_rate_bpm:.0f} bpm")
        """),
        md("""
        The keypoints follow the KDM paper: the long axis runs from the middle of the mitral annulus
        (the basal hinge points) to the apex; 20 chords perpendicular to it cross the LV boundary twice.
        Keypoint *j* is the image-left crossing of chord *j* (red, base → apex), keypoint 39 − *j* the
        image-right one (green). The chords are Simpson's discs. Right: the image the KDM networks are
        conditioned on (`render_keypoints`).
        """),
        code("""
        from echokdm.adapters.echo import render_keypoints
        from echokdm.geometry import mask_keypoints

        frame = cine.frames[ed]
        geo = mask_keypoints(cine.masks[ed])  # the ED frame alone, no temporal smoothing
        kp = geo.keypoints

        fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
        axes[0].imshow(frame, cmap="gray", vmin=0, vmax=1)
        axes[0].contour(cine.masks[ed], levels=[0.5], colors="cyan", linewidths=0.8)
        axes[0].set_title(f"ED frame {ed} and its LV mask")
        axes[1].imshow(frame, cmap="gray", vmin=0, vmax=1)
        for j in range(20):  # the chords (Simpson's discs)
            axes[1].plot(kp[[j, 39 - j], 0], kp[[j, 39 - j], 1], color="white", linewidth=0.4, alpha=0.6)
        axes[1].plot(*geo.annulus.T, color="tab:blue", linewidth=1.5, label="mitral annulus")
        axes[1].plot(*np.stack([geo.basal_centre, geo.apex]).T, color="gold", linewidth=1, label="long axis")
        axes[1].scatter(*kp[:20].T, s=9, color="red", label="keypoints 0–19 (left wall)")
        axes[1].scatter(*kp[20:].T, s=9, color="lime", label="keypoints 20–39 (right wall)")
        axes[1].legend(loc="lower left", fontsize=7)
        axes[1].set_title(f"40 keypoints, L = {geo.length:.1f} px")
        axes[2].imshow(render_keypoints(kp, frame.shape).transpose(1, 2, 0))  # (3, H, W) -> (H, W, 3)
        axes[2].set_title("KDM conditioning image")
        for ax in axes:
            ax.axis("off")
        fig.savefig(OUT / "figures" / "keypoints.png", dpi=100, bbox_inches="tight")
        plt.show()
        """),
        md("""
        ## 3. The KDM pipeline

        A KDM pipeline folder holds the autoencoder, K2F (keypoints → flow), F2I (flow → image) and the
        DDIM scheduler. The packaged `kdm_phantom_112` was trained on a 32-patient realistic-phantom cohort
        (seed 0) at 112 × 112 px, with the scanner look randomised so that it keeps the look of its source frame. The segmentation model re-detects the keypoints on the generated frames, which
        measures the EF the loop actually shows.
        """),
        code("""
        from echokdm.generation import load_segmentation
        from echokdm.pipelines import KDMPipeline

        pipeline_folder = pretrained_path("kdm_phantom_112") if PIPELINE is None else Path(PIPELINE)
        pipe = KDMPipeline.from_pretrained(pipeline_folder).to(DEVICE)
        print(f"KDM pipeline: {pipeline_folder} (works at {pipe.vae.config.sample_size} px)")

        if SEGMENTATION is None and "seg_phantom_112" in available():
            SEGMENTATION = pretrained_path("seg_phantom_112")
        segmentation = load_segmentation(SEGMENTATION).to(DEVICE) if SEGMENTATION else None
        print(f"segmentation model: {SEGMENTATION or 'none (the EF of the generated loops is not re-measured)'}")
        """),
        md("""
        ## 4. Generate the patient's own beat and a beat at a new EF

        The source is the ED frame and its keypoints. A **motion** is a keypoint trajectory `(T, 40, 2)`
        starting at the source pose: `own_motion` replays the clip's own keypoints over one beat;
        `synthetic_motion` makes a physiological beat of the same heart whose Simpson EF is `NEW_EF`.
        `generate_loop` runs KDM on a motion (one K2F flow scaled per frame, then F2I) and returns the frames,
        flows, the target EF and, with a segmentation model, the EF achieved (re-measured on the frames).
        `generate_ef_loop` does this for a synthetic beat and, with a segmentation model, regenerates with a
        corrected keypoint motion (at most 3 loops) until the EF re-measured on the frames is within 2 points
        of `NEW_EF`: the frames show less contraction than the keypoints (with the packaged realistic-phantom
        KDM much less, see the README), so the keypoints may have to move more than asked (`metadata["ef_trajectory"]`).
        """),
        code("""
        from echokdm.generation import generate_ef_loop, generate_loop, own_motion

        common = {"fps": cine.fps, "spacing_mm": cine.spacing_mm, "k": K, "num_inference_steps": STEPS, "seed": SEED,
                  "segmentation": segmentation, "source_index": ed, "patient_id": cine.patient_id}
        own = generate_loop(pipe, frame, keypoints[ed], own_motion(keypoints, ed, stop=next_ed), motion="own",
                            **common)
        new = generate_ef_loop(pipe, frame, keypoints[ed], NEW_EF, heart_rate_bpm=truth.heart_rate_bpm, n_beats=1,
                               calibrate=segmentation is not None, **common)


        def percent(value):
            return np.nan if value is None else round(value, 1)


        pd.DataFrame({
            "loop": ["real beat (phantom truth)", "own beat", f"new EF {NEW_EF:g} %"],
            "frames": [next_ed - ed, own.n_frames, new.n_frames],
            "EF target (%)": [round(truth.ef_percent, 1), percent(own.ef_target), percent(new.ef_target)],
            "EF re-measured (%)": [np.nan, percent(own.ef_achieved), percent(new.ef_achieved)],
            "EF of the keypoints (%)": [np.nan, percent(own.ef_target), percent(new.metadata["ef_trajectory"])],
        })
        """),
        md("""
        ## 5. Frames side by side, and the volume curves

        Frame 0 of each loop is the real source frame; the others are generated. The volume curves are the
        Simpson volumes of the **target** keypoints (what was asked for) and, with a segmentation model,
        of the keypoints **re-detected** on the generated frames (what the loop shows).
        """),
        code("""
        n_columns = 5  # frames evenly spread over each beat, ED first
        rows = {"real": cine.frames[ed:next_ed], "KDM, own beat": own.frames, f"KDM, EF {NEW_EF:g} %": new.frames}
        fig, axes = plt.subplots(len(rows), n_columns, figsize=(2.6 * n_columns, 2.7 * len(rows)))
        for r, (name, frames) in enumerate(rows.items()):
            for c, t in enumerate(np.linspace(0, len(frames) - 1, n_columns).round().astype(int)):
                axes[r, c].imshow(frames[t], cmap="gray", vmin=0, vmax=1)
                axes[r, c].set_title(f"{name}, frame {t}", fontsize=8)
                axes[r, c].axis("off")
        fig.tight_layout()
        fig.savefig(OUT / "figures" / "frames_side_by_side.png", dpi=100, bbox_inches="tight")
        plt.show()

        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(np.arange(next_ed - ed) / cine.fps, volumes[ed:next_ed], color="k", label="real (from the masks)")
        for loop, colour in ((own, "tab:blue"), (new, "tab:red")):
            seconds = np.arange(loop.n_frames) / loop.fps
            ax.plot(seconds, simpson_volume(loop.keypoints, loop.spacing_mm), "--", color=colour,
                    label=f"{loop.motion}: keypoints, EF {percent(loop.metadata.get('ef_trajectory', loop.ef_target))} %")
            if loop.detected_keypoints is not None:
                achieved = "not measurable" if loop.ef_achieved is None else f"{loop.ef_achieved:.1f} %"
                ax.plot(seconds, simpson_volume(loop.detected_keypoints, loop.spacing_mm), "o-", ms=3, color=colour,
                        label=f"{loop.motion}: re-measured, EF {achieved}")
        ax.set_xlabel("time from ED (s)")
        ax.set_ylabel("LV volume (mL, Simpson)")
        ax.legend(fontsize=8)
        fig.savefig(OUT / "figures" / "volume_curves.png", dpi=100, bbox_inches="tight")
        plt.show()
        """),
        md("""
        ## 6. Write the loops: MP4, GIF and DICOM

        `write_loop` writes each loop where clinicians look: an H.264 MP4, a GIF, and an *Ultrasound
        Multi-frame* DICOM file marked as synthetic (*Synthetic Data* = YES, *Image Type* DERIVED\\SECONDARY,
        fresh UIDs, no personal data), plus the keypoints of every frame as CSV and a preview strip. The
        own beat also gets a real | generated MP4. Writers never replace a file unless `overwrite=True`.
        """),
        code("""
        import pydicom

        from echokdm.generation import write_loop
        from echokdm.io import read_video

        written = {
            "own_beat": write_loop(OUT / "loops", own, formats=("mp4", "gif", "dicom"), stem="own_beat",
                                   side_by_side=cine.frames[ed:next_ed]),
            "new_ef": write_loop(OUT / "loops", new, formats=("mp4", "gif", "dicom"), stem="new_ef"),
        }
        for stem, paths in written.items():
            video = read_video(paths["mp4"])
            dataset = pydicom.dcmread(paths["dicom"])
            print(f"{stem}: MP4 {video.n_frames} frames at {video.fps:.1f} fps; DICOM {int(dataset.NumberOfFrames)} "
                  f"frames, SyntheticData={dataset.SyntheticData}, ImageType={list(dataset.ImageType)}")
            for name, path in paths.items():
                print(f"  {name:>12}: {path}")
        display(Image(filename=str(written["new_ef"]["preview"])))
        """),
        md("""
        ## Next

        * `02_keypoints_and_ef.ipynb`: keypoints from masks and EchoNet tracings, Simpson volumes, EF.
        * `03_train_and_evaluate.ipynb`: train a small KDM and compare it with its ablations and baselines.
        * `04_synthetic_cohort.ipynb`: an EF-conditioned synthetic cohort in the EchoNet-Dynamic layout.
        * The same from a terminal: `echokdm demo` (the whole demo on several held-out patients), and
          `echokdm generate SOURCE --own --pipeline FOLDER --out DIR` (one loop from any file).
        """),
    ]


# ---------------------------------------------------------------------------------------------
# 02 keypoints and EF
# ---------------------------------------------------------------------------------------------


def keypoints_and_ef() -> list:
    return [
        md("""
        # 02 · Keypoints, Simpson volumes and EF

        From LV segmentations to the clinical numbers, on phantom data whose truth is known exactly:

        1. **masks → keypoints** (`mask_keypoints`): mitral annulus, apex, long axis, 20 chords, 40 keypoints;
        2. **EchoNet-style tracings → keypoints** (`tracing_keypoints`), compared with the mask keypoints of
           the same frame;
        3. **Simpson volumes over a clip**, ED and ES per beat (`cardiac_cycle`) and the EF, against the
           phantom's true volume curve and EF;
        4. **a whole manifest**: `keypoints_table` → `ef_table` → `ef_agreement` and `plot_ef_agreement`
           (Bland–Altman), for masks on every frame (NIfTI) and for EchoNet's two traced frames.

        **Run time**: about 1 minute on a laptop CPU with the defaults; seconds with `QUICK = True`. No
        model is needed. Outputs go under `OUT` (default `notebook_outputs/02_keypoints_and_ef-full/`, or
        `-quick`; a rerun replaces it).
        The same from a terminal: `echokdm keypoints MANIFEST -o keypoints.parquet` and `echokdm ef MANIFEST -o DIR`.
        """),
        parameters("""
        QUICK = False      # True: 3 small patients (CI)
        N_PATIENTS = 8     # phantom patients in the manifest
        SIZE = 112         # frame size in pixels
        FPS = 50.0         # frames per second
        N_BEATS = 2.0      # clip length in heart beats
        SEED = 3           # phantom cohort seed: the same seed gives the same patients
        OUT = None         # None: notebook_outputs/02_keypoints_and_ef-quick or -full (by QUICK), replaced
                           #   by a rerun; or a new or empty folder of yours (never overwritten)
        """),
        code("""
        %matplotlib inline
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd
        from IPython.display import Image, display

        if QUICK:
            N_PATIENTS, SIZE, FPS = min(N_PATIENTS, 3), min(SIZE, 64), min(FPS, 25.0)

        # <prepare OUT: 02_keypoints_and_ef>
        print(f"outputs in {OUT.resolve()}")
        """),
        md("""
        ## A small phantom cohort, written twice

        The same patients (same seed) as **NIfTI** with the LV mask of every frame, and in the
        **EchoNet-Dynamic** layout (`Videos/*.avi`, `FileList.csv`, `VolumeTracings.csv` with the ES and
        ED tracings). `ground_truth` holds the exact values.
        """),
        code("""
        from echokdm.data.phantom.export import write_cohort

        options = {"n_patients": N_PATIENTS, "seed": SEED, "size": SIZE, "fps": FPS, "n_beats": N_BEATS,
                   "progress": False}
        nifti = write_cohort(OUT / "phantom_nifti", format="nifti", **options)
        echonet = write_cohort(OUT / "phantom_echonet", format="echonet", **options)
        truth = nifti.ground_truth.set_index("clip_name")
        truth[["split", "ef_percent", "edv_ml", "esv_ml", "heart_rate_bpm", "n_frames", "ed_frames", "es_frames"]]
        """),
        md("""
        ## 1. Masks → keypoints

        `mask_keypoints` takes one binary mask `(H, W)` (1 = LV blood pool): the mitral annulus is the flat
        basal side (its two hinge points), the apex the boundary point farthest from the basal centre, and
        20 chords perpendicular to the long axis at t_j = (j + 0.5)/20 cut the boundary twice. Keypoints
        are `(x, y)` pixels: x the column, y the row.
        """),
        code("""
        from echokdm.data.manifest import load_manifest, read_clip
        from echokdm.data.phantom import load_npz
        from echokdm.geometry import mask_keypoints, simpson_volume

        name = truth.index[0]
        nifti_manifest = load_manifest(OUT / "phantom_nifti" / "manifest.csv")
        cine = read_clip(nifti_manifest[nifti_manifest["clip_id"] == truth.loc[name, "clip_id"]].iloc[0])
        exact = load_npz(OUT / "phantom_nifti" / truth.loc[name, "npz"])  # the phantom's exact keypoints and volumes
        ed = int(exact.ed_frames[0])
        geo = mask_keypoints(cine.masks[ed])
        kp = geo.keypoints  # (40, 2) (x, y) px

        fig, ax = plt.subplots(figsize=(5, 5))
        ax.imshow(cine.frames[ed], cmap="gray", vmin=0, vmax=1)
        ax.contour(cine.masks[ed], levels=[0.5], colors="cyan", linewidths=0.7)
        for j in range(20):
            ax.plot(kp[[j, 39 - j], 0], kp[[j, 39 - j], 1], color="white", linewidth=0.5)
        ax.scatter(*kp[:20].T, s=10, color="red", label="left wall, 0 (base) … 19")
        ax.scatter(*kp[20:].T, s=10, color="lime", label="right wall, 20 … 39 (base)")
        ax.scatter(*geo.annulus.T, s=40, marker="s", color="tab:blue", label="annulus hinge points")
        ax.scatter(*geo.apex, s=60, marker="*", color="gold", label="apex")
        ax.plot(*np.stack([geo.basal_centre, geo.apex]).T, color="gold", linewidth=1)
        ax.legend(loc="lower left", fontsize=7)
        ax.set_title(f"{name}, ED frame {ed}")
        ax.axis("off")
        fig.savefig(OUT / "figures" / "mask_keypoints.png", dpi=100, bbox_inches="tight")
        plt.show()

        volume = float(simpson_volume(kp, cine.spacing_mm))
        print(f"long axis {geo.length:.1f} px; Simpson volume {volume:.1f} mL (exact {exact.volumes_ml[ed]:.1f} mL); "
              f"flags: {geo.flags or 'none'}")
        print(f"mean distance to the exact keypoints: {np.linalg.norm(kp - exact.keypoints[ed], axis=1).mean():.2f} px")
        """),
        md("""
        ## 2. EchoNet-style tracings → keypoints

        EchoNet-Dynamic traces only two frames per clip, as line segments: the long axis, then chords
        across the LV. `read_echonet_clip` returns them as `(K, 4)` rows `(x1, y1, x2, y2)`;
        `tracing_keypoints` re-cuts them into the same 40 keypoints as the masks.
        """),
        code("""
        from echokdm.geometry import tracing_keypoints
        from echokdm.io import read_echonet_clip

        traced = read_echonet_clip(OUT / "phantom_echonet", name)
        rows = []
        fig, axes = plt.subplots(1, len(traced.tracings), figsize=(10, 5))
        for ax, (t, segments) in zip(np.atleast_1d(axes), sorted(traced.tracings.items())):
            from_tracing = tracing_keypoints(segments).keypoints
            from_mask = mask_keypoints(cine.masks[t]).keypoints
            ax.imshow(traced.frames[t], cmap="gray", vmin=0, vmax=1)
            for x1, y1, x2, y2 in segments:
                ax.plot([x1, x2], [y1, y2], color="orange", linewidth=0.7)
            ax.scatter(*from_tracing.T, s=10, color="red", label="from the tracing")
            ax.scatter(*from_mask.T, s=10, marker="x", color="cyan", label="from the mask")
            phase = "ED" if t in exact.ed_frames else "ES" if t in exact.es_frames else "traced"
            ax.set_title(f"{phase} frame {t}: {len(segments)} traced segments")
            ax.legend(loc="lower left", fontsize=7)
            ax.axis("off")
            rows.append({"frame": t, "segments": len(segments),
                         "tracing vs mask keypoints (px)": np.linalg.norm(from_tracing - from_mask, axis=1).mean(),
                         "volume from tracing (px³)": float(simpson_volume(from_tracing))})
        fig.savefig(OUT / "figures" / "tracing_keypoints.png", dpi=100, bbox_inches="tight")
        plt.show()
        pd.DataFrame(rows)
        """),
        md("""
        ## 3. Simpson volumes over a clip, ED/ES and EF

        `sequence_keypoints` derives the keypoints of every frame and smooths the apex and annulus over
        time so that keypoint identity is stable over the cycle. `simpson_volume` gives one volume per
        frame (mL with the pixel spacing); `cardiac_cycle` finds each beat's ED (largest volume) and ES
        (smallest) and its EF = 100 (EDV − ESV) / EDV.
        """),
        code("""
        from echokdm.geometry import cardiac_cycle
        from echokdm.geometry.temporal import sequence_keypoints

        sequence = sequence_keypoints(cine.masks)  # keypoints (T, 40, 2)
        volumes = simpson_volume(sequence.keypoints, cine.spacing_mm)  # (T,) mL
        cycle = cardiac_cycle(volumes, cine.fps)

        seconds = np.arange(cine.n_frames) / cine.fps
        fig, ax = plt.subplots(figsize=(8, 3.8))
        ax.plot(seconds, exact.volumes_ml, color="k", linewidth=2, alpha=0.4, label="exact (phantom)")
        ax.plot(seconds, volumes, ".-", color="tab:blue", label="Simpson, keypoints from the masks")
        ax.scatter(seconds[cycle.ed_frames], volumes[cycle.ed_frames], s=60, color="tab:red", zorder=3, label="ED")
        ax.scatter(seconds[cycle.es_frames], volumes[cycle.es_frames], s=60, color="tab:green", zorder=3, label="ES")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("LV volume (mL)")
        ax.legend()
        fig.savefig(OUT / "figures" / "volume_curve.png", dpi=100, bbox_inches="tight")
        plt.show()

        pd.DataFrame({"ED frame": cycle.ed_frames, "ES frame": cycle.es_frames, "EDV (mL)": cycle.edv.round(1),
                      "ESV (mL)": cycle.esv.round(1), "EF (%)": cycle.ef.round(1),
                      "true EF (%)": round(truth.loc[name, "ef_percent"], 1)})
        """),
        md("""
        ## 4. A whole manifest: keypoint and EF tables, agreement with the reference

        `keypoints_table` reads every clip of a manifest and derives keypoints and volume for every
        labelled frame (masks, or tracings for EchoNet); `ef_table` makes one row per clip (all frames
        labelled: per beat with `cardiac_cycle`; two traced frames: their larger and smaller volume);
        `ef_agreement` compares with the manifest's `ef_reference` (here the phantom's true EF): MAE,
        bias, limits of agreement, Pearson r, with bootstrap 95 % intervals. Clips or frames that fail are
        listed in `skipped`, never dropped silently.
        """),
        code("""
        from echokdm.metrics.lv_function import ef_agreement, ef_table, keypoints_table, plot_ef_agreement, write_table

        tables = []
        for folder in ("phantom_nifti", "phantom_echonet"):
            frames = keypoints_table(OUT / folder / "manifest.csv", progress=False)
            ef = ef_table(frames)
            print(f"{folder}: {len(frames.frames)} labelled frames, {len(ef.clips)} clips, "
                  f"skipped {frames.skipped + ef.skipped or 'nothing'}")
            tables.append(ef.clips)
        clips = pd.concat(tables, ignore_index=True)
        write_table(clips, OUT / "ef_clips.csv")
        clips[["dataset", "clip_id", "method", "n_beats", "edv", "esv", "volume_units", "ef", "ef_reference",
               "ef_error"]]
        """),
        code("""
        agreement = ef_agreement(clips, n_boot=1000, seed=0)
        write_table(agreement, OUT / "ef_agreement.csv")
        display(agreement[["dataset", "n", "mae", "mae_ci_low", "mae_ci_high", "bias", "loa_low", "loa_high",
                           "pearson_r"]])

        plots = plot_ef_agreement(clips, OUT)
        for path in plots.values():
            display(Image(filename=str(path)))
        """),
    ]


# ---------------------------------------------------------------------------------------------
# 03 train and evaluate
# ---------------------------------------------------------------------------------------------


def train_and_evaluate() -> list:
    return [
        md("""
        # 03 · Train a small KDM and evaluate it (the paper's Table 3)

        1. simulate a small **phantom cohort** with patient-level train / val / test splits;
        2. **train KDM** from a config dict: the latent autoencoder, K2F (keypoints → flow), F2I (flow →
           image) and the "w/o K2F" F2I ablation, each through the one training loop;
        3. **evaluate** on the test split: for every test clip, each method predicts the frames of one beat
           from its ED frame and the target keypoints (KDM, "w/o F2I", "w/o K2F", thin-plate-spline warp,
           no edit), scored per frame and summarised per patient with bootstrap 95 % intervals;
        4. show the **Table-3-style** markdown, the summary table and plots, and the memorisation check.

        **Run time**: about 20 minutes on a laptop CPU with the defaults (a 64 px KDM, 600 steps per stage:
        far from the paper's quality); about a minute with `QUICK = True` (a 32 px KDM trained for a few
        steps, which only shows the workflow). For the full 112 px model use `configs/echo/kdm_112.yaml`
        (`echokdm train kdm`). Outputs go under `OUT` (default `notebook_outputs/03_train_and_evaluate-full/`,
        or `-quick`; a rerun replaces it).
        """),
        parameters("""
        QUICK = False         # True: a tiny 32 px KDM and a 5-patient cohort (CI; shows the workflow only)
        N_PATIENTS = 12       # phantom patients, split 70/15/15 % train/val/test by patient
        SIZE = 64             # frame size of the cohort and the model (pixels, divisible by 16)
        FPS = 25.0            # phantom frame rate
        N_BEATS = 1.5         # clip length in beats
        TRAIN_STEPS = 600     # optimisation steps of each stage (autoencoder, K2F, F2I, F2I w/o flow)
        BATCH_SIZE = 8        # training batch size
        STEPS = 50            # DDIM steps at evaluation (the paper: 200)
        K = 25                # F2I start step at evaluation (the paper: 100 of 200)
        MAX_TARGETS = 6       # target frames per test clip (ES always included)
        LPIPS_NETS = ("alex", "vgg")  # LPIPS variants; () skips LPIPS
        LPIPS_BACKBONE = None # folder of alexnet_features.pth / vgg16_features.pth; None: $ECHOKDM_LPIPS_WEIGHTS,
                              # else torchvision's cache or download, else LPIPS is left out with a note
        SEED = 0              # cohort and evaluation seed
        OUT = None            # None: notebook_outputs/03_train_and_evaluate-quick or -full (by QUICK), replaced
                              #   by a rerun; or a new or empty folder of yours (never overwritten)
        """),
        code("""
        %matplotlib inline
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd
        from IPython.display import Image, Markdown, display

        if QUICK:
            N_PATIENTS, SIZE, FPS, N_BEATS = 5, 32, 20.0, 1.3
            TRAIN_STEPS, BATCH_SIZE, STEPS, K, MAX_TARGETS = 10, 4, 4, 2, 4

        # <prepare OUT: 03_train_and_evaluate>
        print(f"outputs in {OUT.resolve()}")
        """),
        md("""
        ## 1. A phantom cohort with patient-level splits

        No patient appears in two splits. The manifest is what every later step reads.
        """),
        code("""
        from echokdm.data.phantom.export import write_cohort

        cohort = write_cohort(OUT / "cohort", n_patients=N_PATIENTS, format="nifti", seed=SEED, size=SIZE, fps=FPS,
                              n_beats=N_BEATS, progress=False)
        manifest = OUT / "cohort" / "manifest.csv"
        print(cohort.ground_truth["split"].value_counts().to_dict())
        cohort.ground_truth[["clip_name", "split", "ef_percent", "heart_rate_bpm", "n_frames"]]
        """),
        md("""
        ## 2. Train KDM

        The config is a plain dict validated by `load_kdm_config` (a misspelt key is an error that names
        it); the same keys as `configs/echo/kdm_112.yaml`. Training pairs (source frame, target frame, their
        keypoints, the exact flow between them) come from the phantom's ground truth. The run folder holds
        one folder per stage (resolved config, git commit, `log.csv`, `best/`, `last/`) and the assembled
        `pipeline/` and `pipeline_noflow/`; a stage whose `best/` exists is skipped on a rerun.
        """),
        code("""
        from echokdm.training.kdm import load_kdm_config, train_kdm

        small = QUICK or SIZE <= 32
        unet = {"block_out_channels": [16, 32] if small else [32, 64, 64], "layers_per_block": 1,
                "attention_levels": [False, True] if small else [False, False, True],
                "condition_embed_channels": 8 if small else 16, "norm_num_groups": 8, "flow_scale": 4.0}
        loop = {"steps": TRAIN_STEPS, "batch_size": BATCH_SIZE, "val_every": max(TRAIN_STEPS // 3, 1),
                "checkpoint_every": max(TRAIN_STEPS // 3, 1)}
        config = load_kdm_config(None, {
            "data": {"size": SIZE, "pairs_per_clip": 6 if small else 24, "val_pairs": 4 if small else 12},
            "autoencoder": {"model": {"block_out_channels": [8, 16, 16] if small else [16, 32, 32],
                                      "norm_num_groups": 8},
                            "loss": {"lpips": 0.0}, "train": {**loop, "lr": 1e-3}},
            "k2f": {"model": unet, "train": {**loop, "lr": 1e-3 if small else 5e-4}},
            "f2i": {"model": unet, "train": {**loop, "lr": 1e-3 if small else 5e-4}},
            "sampling": {"num_train_timesteps": 100 if small else 1000, "num_inference_steps": STEPS, "k": K,
                         "val_inference_steps": min(STEPS, 4 if small else 10)},
        })
        run = train_kdm(config, manifest, OUT / "run", progress=not QUICK)
        print("pipelines:", run["pipelines"])
        print("clips skipped while building training pairs:", run["skipped_clips"] or "none")
        """),
        code("""
        stages = ("autoencoder", "k2f", "f2i", "f2i_noflow")
        fig, axes = plt.subplots(1, len(stages), figsize=(16, 3))
        for ax, stage in zip(axes, stages):
            log = pd.read_csv(OUT / "run" / stage / "log.csv")  # one row per validation
            ax.plot(log["step"], log["train_loss"], "o-", color="tab:blue")
            ax.set_ylabel("training loss", color="tab:blue")
            validation = [c for c in log.columns if c.startswith("val_")][:1]  # the stage's validation metric
            if validation:
                ax.twinx().plot(log["step"], log[validation[0]], "s--", color="tab:orange")
                ax.set_title(f"{stage} (orange: {validation[0]})", fontsize=9)
            ax.set_xlabel("step")
        fig.tight_layout()
        fig.savefig(OUT / "figures" / "training_losses.png", dpi=100, bbox_inches="tight")
        plt.show()
        """),
        md("""
        ## 3. Evaluate on the test split

        Every method predicts the same target frames from the same ED source frame, one sample per case
        with a seed derived from the clip id (no best-of-N). Frames are scored by MSE, PSNR, SSIM, LPIPS and
        the flow end-point error against the phantom's exact flow (whole frame and inside the LV); the
        summary averages per patient first, then over patients, with patient-level bootstrap intervals.
        (`evaluate` can resume its folder: called again with the same settings it reuses finished clips.)
        """),
        code("""
        from echokdm.evaluation import EvaluateConfig, evaluate

        settings = EvaluateConfig(split="test", max_targets=MAX_TARGETS, num_inference_steps=STEPS, k=K, seed=SEED,
                                  lpips_nets=tuple(LPIPS_NETS), lpips_backbone=LPIPS_BACKBONE,
                                  n_boot=200 if QUICK else 2000)
        result = evaluate(manifest, OUT / "run" / "pipeline", out=OUT / "evaluation", config=settings,
                          progress=not QUICK)
        display(Markdown(result.table3))
        """),
        code("""
        summary = result.summary.set_index("method")
        shown = [c for c in ("n_patients", "mse", "psnr", "ssim", "lpips_alex", "lpips_vgg", "epe", "epe_lv",
                             "temporal_error", "seconds_per_frame") if c in summary]
        summary[shown].round(4)
        """),
        code("""
        methods = [m for m in summary.index if m != "real"]
        means = summary.loc[methods, "mse"]
        errors = np.stack([means - summary.loc[methods, "mse_low"], summary.loc[methods, "mse_high"] - means])
        fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
        axes[0].bar(methods, means, yerr=errors, capsize=4, color="tab:blue")
        axes[0].set_ylabel("MSE (mean over patients, 95 % CI)")
        axes[0].set_title("image error per method")
        per_patient = result.patients.pivot_table(index="patient_id", columns="method", values="epe_lv")
        with_flow = [m for m in methods if m in per_patient]  # "w/o K2F" makes no flow: no EPE
        axes[1].boxplot([per_patient[m].dropna() for m in with_flow], tick_labels=with_flow)
        axes[1].set_ylabel("flow EPE inside the LV (px), per patient")
        axes[1].set_title("motion error per method")
        fig.tight_layout()
        fig.savefig(OUT / "figures" / "methods.png", dpi=100, bbox_inches="tight")
        plt.show()
        """),
        md("""
        One test clip: the source (ED) frame, the real target frames, and what each method made of them
        (the evaluation keeps every generated frame in `generated/<clip>.npz`).
        """),
        code("""
        clip = min((OUT / "evaluation" / "generated").glob("*.npz"))  # the first test clip by name
        with np.load(clip) as saved:
            rows = {"real": saved["real"]} | {m: saved[f"{m}_frames"] for m in methods if f"{m}_frames" in saved}
            source, targets = saved["source"], saved["targets"]
        fig, axes = plt.subplots(len(rows), len(targets) + 1, figsize=(1.9 * (len(targets) + 1), 1.9 * len(rows)))
        for r, (name, frames) in enumerate(rows.items()):
            axes[r, 0].imshow(source, cmap="gray", vmin=0, vmax=255)
            axes[r, 0].set_ylabel(name)
            for c, t in enumerate(targets):
                axes[r, c + 1].imshow(frames[c], cmap="gray", vmin=0, vmax=255)
                axes[0, c + 1].set_title(f"frame {t}", fontsize=8)
            for ax in axes[r]:
                ax.set_xticks([])
                ax.set_yticks([])
        axes[0, 0].set_title("source (ED)", fontsize=8)
        fig.tight_layout()
        fig.savefig(OUT / "figures" / "test_clip.png", dpi=100, bbox_inches="tight")
        plt.show()
        """),
        md("""
        ## 4. Memorisation check

        Are the generated frames closer to the training frames than real frames of unseen patients are?
        `fraction_closer` should be near `expected_fraction` (and the Mann–Whitney p-value not small) for a
        model that does not copy its training data. A privacy signal, not a proof.
        """),
        code("""
        display(result.memorisation)
        for name in ("metrics_per_patient.png", "worst_patients_kdm.png"):
            if (OUT / "evaluation" / "plots" / name).exists():
                display(Image(filename=str(OUT / "evaluation" / "plots" / name)))
        print(f"every table is also written as CSV in {result.out}")
        """),
    ]


# ---------------------------------------------------------------------------------------------
# 04 synthetic cohort
# ---------------------------------------------------------------------------------------------


def synthetic_cohort() -> list:
    return [
        md("""
        # 04 · An EF-conditioned synthetic cohort

        1. **EF-conditioned generation**: from one end-diastolic (ED) frame of a held-out phantom patient,
           synthetic beats at EF 25, 45 and 65 % (`generate_ef_loop`: `synthetic_motion` + `generate_loop`,
           corrected until the EF re-measured on the frames is on target); their volume curves and frames;
        2. **a small synthetic cohort** (`synthesize_cohort`, the function behind `echokdm synthesize`):
           ED frames of several held-out patients animated at EFs drawn from a range, written in the
           **EchoNet-Dynamic layout**, then read back with echokdm's EchoNet reader (videos, `FileList.csv`
           EF, and the tracings turned back into keypoints and EF);
        3. the **memorisation check** that comes with it: are the generated frames closer to the
           pipeline's training frames than real frames of unseen patients are?

        **Run time**: about 6 minutes on a laptop CPU with the defaults (3 + 8 loops at 25 fps, 200 DDIM
        steps) if each loop is generated once; the closed-loop EF control generates a loop up to 3 times
        (about 2 on average with the demo checkpoint), so count up to twice that. About a minute on a GPU,
        under a minute with `QUICK = True`. Needs the packaged
        `kdm_phantom_112` (or your own `PIPELINE`). Outputs go under `OUT` (default
        `notebook_outputs/04_synthetic_cohort-full/`, or `-quick`; a rerun replaces it).
        """),
        parameters("""
        QUICK = False               # True: 2 patients, 4 loops, few frames and DDIM steps (CI; shows the workflow only)
        PIPELINE = None             # None: the packaged demo checkpoint "kdm_phantom_112"; or a KDM pipeline folder
        SEGMENTATION = None         # None: the packaged "seg_phantom_112" if installed; False: none; or a folder
        TRAINING_MANIFEST = None    # manifest PIPELINE was trained on; None: re-simulate the packaged pipeline's
        TRAINING_SEED = 0           #   phantom cohort (seed 0, 24 patients, as `echokdm phantom --patients 24
        TRAINING_PATIENTS = 24      #   --format nifti --seed 0`), for the memorisation check
        EFS = (25.0, 45.0, 65.0)    # part 1: EFs (%) of the beats made from one ED frame
        HEART_RATE = 70.0           # part 1: beats per minute
        N_PATIENTS = 4              # held-out phantom patients: the source ED frames
        PATIENT_SEED = 1000         # their phantom seed (the packaged KDM was trained on seed 0)
        N_LOOPS = 8                 # part 2: loops of the cohort (the sources are cycled)
        EF_RANGE = (20.0, 70.0)     # part 2: target EFs (%) drawn uniformly in this range
        SIZE = 112                  # phantom frame size in pixels
        FPS = 25.0                  # frame rate of the loops
        STEPS = 200                 # DDIM steps
        K = 100                     # F2I start step
        SEED = 0                    # generation seed: the same seed gives the same cohort
        OUT = None                  # None: notebook_outputs/04_synthetic_cohort-quick or -full (by QUICK), replaced
                                    #   by a rerun; or a new or empty folder of yours (never overwritten)
        """),
        code("""
        %matplotlib inline
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd
        import torch
        from IPython.display import Image, display

        from echokdm.pretrained import available, pretrained_path

        if QUICK:
            N_PATIENTS, N_LOOPS, FPS, STEPS, K = min(N_PATIENTS, 2), min(N_LOOPS, 4), min(FPS, 10.0), 4, 2
        DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

        # <prepare OUT: 04_synthetic_cohort>
        print(f"outputs in {OUT.resolve()}; packaged checkpoints: {available() or 'none'}")
        """),
        code("""
        from echokdm.generation import load_segmentation
        from echokdm.pipelines import KDMPipeline

        pipeline_folder = pretrained_path("kdm_phantom_112") if PIPELINE is None else Path(PIPELINE)
        pipe = KDMPipeline.from_pretrained(pipeline_folder).to(DEVICE)
        if SEGMENTATION is None and "seg_phantom_112" in available():
            SEGMENTATION = pretrained_path("seg_phantom_112")
        segmentation = load_segmentation(SEGMENTATION).to(DEVICE) if SEGMENTATION else None
        print(f"KDM pipeline: {pipeline_folder} ({pipe.vae.config.sample_size} px); "
              f"segmentation: {SEGMENTATION or 'none (EF achieved not measured)'}")
        """),
        md("""
        ## 1. One ED frame, three ejection fractions

        The sources are held-out phantom patients (a seed the pipeline was not trained on) written as
        scanner-like DICOM files, with the phantom's exact keypoints in `ground_truth/`. `source_from_file`
        reads one frame of a file (frame rate and pixel spacing from the DICOM) with its keypoints.
        `synthetic_motion` scales the heart about its apex, along the long axis and across it, so that the
        Simpson volume follows a physiological volume curve with the requested EF.
        `generate_ef_loop` generates the beat and, with a segmentation model, re-measures the EF on the
        generated frames; while it is more than 2 points off, it regenerates (same noise) with the keypoint
        motion's EF corrected (secant method, at most 3 loops). The table shows the EF of the keypoint
        trajectory finally used next to the EF re-measured on the frames.
        """),
        code("""
        from echokdm.data.manifest import load_manifest
        from echokdm.data.phantom import load_npz
        from echokdm.data.phantom.export import write_cohort
        from echokdm.generation import generate_ef_loop, source_from_file
        from echokdm.geometry import simpson_volume

        sources = write_cohort(OUT / "sources", n_patients=N_PATIENTS, format="dicom", seed=PATIENT_SEED, size=SIZE,
                               fps=FPS, n_beats=1.0, progress=False)
        source_manifest = OUT / "sources" / "manifest.csv"
        first = sources.ground_truth.iloc[0]
        exact = load_npz(OUT / "sources" / first["npz"])  # exact keypoints, volumes, ED/ES frames
        ed = int(exact.ed_frames[0])
        path = load_manifest(source_manifest).set_index("clip_id").loc[first["clip_id"], "path"]
        source = source_from_file(path, ed, keypoints=exact.keypoints[ed])

        loops = {}
        for ef in EFS:
            loops[ef] = generate_ef_loop(pipe, source.frame, source.keypoints, ef, heart_rate_bpm=HEART_RATE, fps=FPS,
                                         n_beats=1, calibrate=segmentation is not None, spacing_mm=source.spacing_mm, k=K,
                                         num_inference_steps=STEPS, seed=SEED, segmentation=segmentation, source_index=ed,
                                         patient_id=source.patient_id, progress=not QUICK)
        pd.DataFrame([{"EF requested (%)": ef, "frames": loop.n_frames,
                       "EF of the keypoints (%)": round(loop.metadata["ef_trajectory"], 1),
                       "loops generated": max(len(loop.metadata["ef_attempts"]), 1),
                       "EF re-measured (%)": np.nan if loop.ef_achieved is None else round(loop.ef_achieved, 1)}
                      for ef, loop in loops.items()])
        """),
        code("""
        fig, ax = plt.subplots(figsize=(7, 3.8))
        for ef, loop in loops.items():
            seconds = np.arange(loop.n_frames) / loop.fps
            line, = ax.plot(seconds, simpson_volume(loop.keypoints, loop.spacing_mm),
                            label=f"keypoints, EF {loop.metadata['ef_trajectory']:.1f} %")
            if loop.detected_keypoints is not None:
                achieved = "not measurable" if loop.ef_achieved is None else f"{loop.ef_achieved:.1f} %"
                ax.plot(seconds, simpson_volume(loop.detected_keypoints, loop.spacing_mm), "o", ms=3,
                        color=line.get_color(), label=f"re-measured, EF {achieved}")
        ax.set_xlabel("time from ED (s)")
        ax.set_ylabel("LV volume (mL)")
        ax.legend(fontsize=8)
        fig.savefig(OUT / "figures" / "volume_curves.png", dpi=100, bbox_inches="tight")
        plt.show()

        fig, axes = plt.subplots(len(loops), 3, figsize=(8, 2.8 * len(loops)), squeeze=False)
        for r, (ef, loop) in enumerate(loops.items()):
            es = int(np.nanargmin(simpson_volume(loop.keypoints)))
            for c, (t, name) in enumerate(((0, "ED (real source)"), (es, "ES"), (loop.n_frames - 1, "last"))):
                axes[r, c].imshow(loop.frames[t], cmap="gray", vmin=0, vmax=1)
                axes[r, c].plot(*loop.keypoints[t].T, ".", ms=2, color="red")
                axes[r, c].set_title(f"EF {ef:g} %: {name}, frame {t}", fontsize=8)
                axes[r, c].axis("off")
        fig.tight_layout()
        fig.savefig(OUT / "figures" / "ef_frames.png", dpi=100, bbox_inches="tight")
        plt.show()
        """),
        md("""
        ## 2. A synthetic cohort in the EchoNet-Dynamic layout

        `synthesize_cohort` takes the ED frame of every source clip (keypoints from the phantom's ground
        truth here; masks, tracings or the segmentation model for other data), draws an EF and a heart rate
        per loop (loop *i* depends only on the seed and *i*), generates the loops one at a time and writes
        `Videos/synthetic_*.avi`, `FileList.csv` (EF = the re-measured EF when a segmentation model
        measured it, else the target), `VolumeTracings.csv` (ES and ED tracings from the keypoints),
        `echokdm_cohort.csv` and `cohort.csv` (source patient pseudonym, target and achieved EF, seed),
        `skipped.csv`, `settings.json` and the memorisation check against the pipeline's training frames.

        The training cohort of the packaged pipeline is re-simulated from its seed (the phantom is
        deterministic); its `train` split gives the training frames.
        """),
        code("""
        from echokdm.generation import synthesize_cohort

        if TRAINING_MANIFEST is None:
            write_cohort(OUT / "training_cohort", n_patients=TRAINING_PATIENTS, format="nifti", seed=TRAINING_SEED,
                         size=SIZE, progress=False)
            TRAINING_MANIFEST = OUT / "training_cohort" / "manifest.csv"
        result = synthesize_cohort(source_manifest, pipe, OUT / "synthetic_echonet", n_loops=N_LOOPS, split="all",
                                   ef_range=EF_RANGE, fps=FPS, segmentation=segmentation,
                                   training_manifest=TRAINING_MANIFEST, seed=SEED, k=K, num_inference_steps=STEPS,
                                   progress=not QUICK)
        print("\\n".join(result.summary_lines()))
        if not result.skipped.empty:
            display(result.skipped)  # every clip or loop left out, with the reason
        result.cohort
        """),
        code("""
        from echokdm.geometry import tracing_keypoints
        from echokdm.io import read_echonet_clip, read_echonet_filelist

        filelist = read_echonet_filelist(result.out)
        rows = []
        for entry in filelist.itertuples():
            clip = read_echonet_clip(result.out, entry.FileName, filelist=filelist)
            volumes = {t: float(simpson_volume(tracing_keypoints(s).keypoints)) for t, s in clip.tracings.items()}
            ef_tracings = 100 * (max(volumes.values()) - min(volumes.values())) / max(volumes.values())
            rows.append({"FileName": entry.FileName, "frames read": clip.n_frames, "fps": round(clip.fps, 2),
                         "EF (FileList)": round(entry.EF, 2), "EF from the tracings": round(ef_tracings, 2),
                         "traced frames": sorted(clip.tracings)})
        read_back = pd.DataFrame(rows)
        read_back.to_csv(OUT / "read_back.csv", index=False)
        display(read_back)
        display(Image(filename=str(result.paths["ef_plot"])))
        """),
        md("""
        ## 3. Memorisation check

        Every model-made frame (the real source frame of each loop left out) is compared with its nearest
        training frame (MSE), and so are real frames of patients outside the training split (the held-out
        sources). A generator that copies its training data would put its frames much closer
        (`fraction_closer` near 1); about `expected_fraction` is what unseen real frames give. A privacy
        signal before sharing synthetic data, not a proof of privacy.
        """),
        code("""
        display(pd.DataFrame([result.memorisation]))
        display(Image(filename=str(result.paths["memorisation_plot"])))
        print(f"cohort, tables and plots: {result.out.resolve()}")
        """),
    ]


NOTEBOOKS = {
    "01_quickstart": quickstart,
    "02_keypoints_and_ef": keypoints_and_ef,
    "03_train_and_evaluate": train_and_evaluate,
    "04_synthetic_cohort": synthetic_cohort,
}


def build_notebooks() -> dict[str, nbformat.NotebookNode]:
    """Every notebook, by file stem, validated against the nbformat schema."""
    notebooks = {}
    for stem, cells in NOTEBOOKS.items():
        nb = _notebook(stem, cells())
        nbformat.validate(nb)
        notebooks[stem] = nb
    return notebooks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the stored notebooks are up to date")
    args = parser.parse_args(argv)
    stale = []
    for stem, nb in build_notebooks().items():
        path = HERE / f"{stem}.ipynb"
        text = nbformat.writes(nb) + "\n"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print(f"out of date (run python {Path(__file__).name}): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
