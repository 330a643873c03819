"""The Gradio page of ``echokdm app``: three tabs, Clip, Generate and Results.

Every handler calls :mod:`echokdm.app.clip`, :mod:`echokdm.app.render`, :mod:`echokdm.app.generate`
and :mod:`echokdm.app.results`, which call the package's public functions; a handler only turns
widget values into their arguments and their results into widget values, and a failure into one
line in the status box. Gradio is imported here only (``pip install echokdm[app]``).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["build_app", "launch"]

_MOTION_LABELS = {"own": "the clip's own beat", "transfer": "another clip's beat",
                  "synthetic": "EF and heart rate", "drag": "keypoints dragged on the frame"}
_FORMATS = ("mp4", "gif", "dicom", "nifti")
_DRAG_COLUMNS = ["keypoint", "dx", "dy"]


def _quiet_gradio() -> None:
    """No analytics, no version check, no telemetry: set before gradio is imported."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("GRADIO_TELEMETRY_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _problem(exc: BaseException, path=None) -> str:
    from echokdm.app.clip import problem_line

    return "⚠ " + problem_line(path, exc)


class _Session:
    """What the page keeps between clicks (one local user): the opened clip, the models, the last loop."""

    def __init__(self, pipeline: str, segmentation: str | None, work: Path) -> None:
        self.pipeline = pipeline
        self.segmentation = segmentation
        self.work = work
        self.view = None
        self.loop = None
        self.counter = 0

    def models(self):
        from echokdm.app.generate import load_models

        return load_models(self.pipeline, self.segmentation)

    def next_path(self, name: str) -> Path:
        self.counter += 1
        return self.work / f"{self.counter:04d}_{name}"


# --------------------------------------------------------------------------------------------
# handlers (plain functions of widget values; tests call them without a browser)
# --------------------------------------------------------------------------------------------


def _resolve_input(path_text: str | None, upload) -> str | None:
    if upload:
        return str(upload if isinstance(upload, (str, Path)) else getattr(upload, "name", upload))
    return (path_text or "").strip() or None


def open_input(session: _Session, path_text: str | None, upload=None, clip_id: str | None = None):
    """``(status, clip choices, chosen clip, video, summary, frame slider max, picture, ED frame)`` of a file or
    manifest; the ED frame is :func:`ed_frame_of`'s (the slider names it)."""
    from echokdm.app.clip import clip_summary, is_manifest, manifest_clips, open_clip
    from echokdm.app.render import frame_picture, write_overlay_video

    path = _resolve_input(path_text, upload)
    if path is None:
        raise ValueError("give a file: a DICOM, AVI/MP4, NIfTI, image or manifest CSV path, or upload one")
    clips = []
    if is_manifest(path):
        clips = manifest_clips(path)["clip_id"].astype(str).tolist()
        clip_id = clip_id if clip_id in clips else (clips[0] if clips else None)
    models = session.models()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        view = open_clip(path, clip_id=clip_id, segmentation=models.segmentation)
    session.view, session.loop = view, None
    video = write_overlay_video(session.next_path("clip.mp4"), view)
    kp = view.keypoints[0] if np.isfinite(view.keypoints[0]).any() else None
    picture = frame_picture(view.cine.frames[0], kp)
    status = f"opened {view.path.name}" + (f", clip {clip_id} of {len(clips)}" if clips else "")
    return status, clips, clip_id, str(video), clip_summary(view), view.n_frames - 1, picture, ed_frame_of(view)


def ed_frame_of(view) -> int:
    """The clip's end-diastolic frame to start a new-EF or transferred beat from (as ``echokdm generate
    --ef/--transfer`` do: a new-EF beat from end-systole squeezes an LV that has already contracted), 0 when
    the clip was not measured. The slider names it; it starts at 0, where an own beat covers the most."""
    from echokdm.geometry.volumes import first_full_ed_frame

    ed = first_full_ed_frame(view.volumes, view.ed_frames) if np.isfinite(view.volumes).any() else None
    if ed is None or not np.isfinite(view.keypoints[ed]).all():
        return 0
    return int(ed)


def drag_table(rows) -> dict[int, tuple[float, float]]:
    """``{keypoint: (dx, dy)}`` from the drag table's rows (keypoint, dx, dy); empty rows skipped."""
    table = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows or [], columns=_DRAG_COLUMNS)
    drags = {}
    for rec in table.to_dict("records"):
        values = [rec.get(c) for c in _DRAG_COLUMNS]
        if any(v is None or v == "" or (isinstance(v, float) and math.isnan(v)) for v in values):
            continue
        k, dx, dy = int(float(values[0])), float(values[1]), float(values[2])
        if not 0 <= k < 40:
            raise ValueError(f"drag table: keypoint {k} is not within 0 … 39")
        drags[k] = (dx, dy)
    return drags


def frame_view(session: _Session, frame: int, rows, picked: int | None = None):
    """The picture of source frame ``frame`` with its keypoints and the dragged ones."""
    from echokdm.app.render import frame_picture

    view = session.view
    if view is None:
        return None
    frame = int(np.clip(frame, 0, view.n_frames - 1))
    kp = view.keypoints[frame]
    if not np.isfinite(kp).any():
        return frame_picture(view.cine.frames[frame], None)
    moved = kp.copy()
    for k, (dx, dy) in drag_table(rows).items():
        moved[k] = kp[k] + (dx, dy)
    return frame_picture(view.cine.frames[frame], kp, moved=moved, picked=picked)


def click_frame(session: _Session, frame: int, rows, picked: int | None, xy):
    """A click on the source frame: the first picks the nearest keypoint, the second puts it there
    (a row of the drag table). Returns ``(rows, picked, picture, status)``."""
    from echokdm.app.render import display_to_frame, nearest_keypoint

    view = session.view
    if view is None:
        raise ValueError("open a clip first")
    kp = view.keypoints[int(frame)]
    if not np.isfinite(kp).all():
        raise ValueError(f"frame {frame} has no keypoints to drag")
    table = pd.DataFrame(rows if rows is not None else [], columns=_DRAG_COLUMNS)
    if picked is None:
        k = nearest_keypoint(kp, xy, view.cine.frames.shape[1:])
        return table, k, frame_view(session, frame, table, k), f"keypoint {k} picked: click its new place"
    x, y = display_to_frame(xy, view.cine.frames.shape[1:])
    dx, dy = round(x - float(kp[picked, 0]), 2), round(y - float(kp[picked, 1]), 2)
    table = table[table["keypoint"].astype(str) != str(picked)]
    table = pd.concat([table, pd.DataFrame([[picked, dx, dy]], columns=_DRAG_COLUMNS)], ignore_index=True)
    return table, None, frame_view(session, frame, table), f"keypoint {picked} dragged by ({dx:+.1f}, {dy:+.1f}) px"


def sampling_from(steps: int, k: int, seed: int, quick: bool):
    """The :class:`~echokdm.generation.settings.SamplingSettings` of the widgets (few DDIM steps when ``quick``)."""
    from echokdm.generation.settings import SamplingSettings

    if quick:
        steps, k = 10, 1
    return SamplingSettings(num_inference_steps=int(steps), k=int(min(k, steps)), seed=int(seed))


def _percent(value) -> str:
    return "not measured" if value is None or not math.isfinite(value) else f"{value:.1f} %"


def run_generation(session: _Session, motion: str, frame: int, n_frames, other: str, other_ed, ef: float,
                   heart_rate: float, rows, steps: int, k: int, seed: int, quick: bool, progress=None):
    """Generate a loop and its real | generated video. Returns ``(video path, result markdown)``."""
    from echokdm.app.generate import LoopRequest, generate, side_by_side_video

    view = session.view
    if view is None:
        raise ValueError("open a clip first (Clip tab)")
    request = LoopRequest(motion=motion, frame=int(frame), frames=int(n_frames) if n_frames else None,
                          other=(other or "").strip() or None,
                          other_ed=int(str(other_ed).strip()) if str(other_ed or "").strip() else None,
                          ef=float(ef), heart_rate=float(heart_rate), drags=drag_table(rows))
    sampling = sampling_from(steps, k, seed, quick)
    started = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loop, real, _ = generate(view.path, request, session.models(), sampling, format=view.format, progress=True)
        session.loop = loop
        video = side_by_side_video(session.work, loop, real, stem=session.next_path("loop").name)
    seconds = time.monotonic() - started
    attempts = loop.metadata.get("ef_attempts") or []
    lines = [f"**Generated** {loop.n_frames} frames at {loop.fps:.3g} fps ({_MOTION_LABELS[motion]}, "
             f"{sampling.num_inference_steps} DDIM steps, k = {sampling.k}) in {seconds:.1f} s",
             f"**EF** asked for (keypoints) {_percent(loop.ef_target)} · **re-measured on the generated frames** "
             f"{_percent(loop.ef_achieved)}" + (f" · {len(attempts)} attempt(s)" if attempts else "")]
    from echokdm.generation.loop import UNREAD_NOTE

    note = loop.metadata.get("ef_achieved_note", "")
    if loop.ef_achieved is None and note.startswith(UNREAD_NOTE):
        lines.append(f"**No EF re-measured**: {note}")
    return str(video), "  \n".join(lines)


def export_current(session: _Session, out: str, formats, stem: str, overwrite: bool):
    """Write the last loop with ``write_loop``; returns ``(files, status)``."""
    from echokdm.app.generate import export_loop

    if session.loop is None:
        raise ValueError("generate a loop first")
    formats = [f for f in (formats or []) if f in _FORMATS]
    if not formats:
        raise ValueError(f"choose at least one format ({', '.join(_FORMATS)})")
    out = (out or "").strip() or "echokdm_app_exports"
    stem = (stem or "").strip() or f"{session.view.path.name.split('.')[0]}_f{session.loop.source_frame}_" \
                                    f"{session.loop.motion}"
    written = export_loop(out, session.loop, formats, stem=stem, source=session.view.path,
                          source_format=session.view.format, overwrite=overwrite)
    return [str(p) for p in written.values()], f"wrote {len(written)} file(s) to {Path(out).resolve()}"


def open_results_folder(session: _Session, folder: str):
    from echokdm.app.results import open_results

    results = open_results((folder or "").strip())
    session.results = results
    shown = results.table.round(4)
    return shown, (f"{results.kind} folder: {len(shown)} row(s), worst first by {results.worst_by} "
                   "(click a column header to sort, a row to play it)")


def play_result_row(session: _Session, index: int):
    from echokdm.app.results import row_videos

    results = getattr(session, "results", None)
    if results is None:
        raise ValueError("open a results folder first")
    videos = row_videos(results, int(index), session.work)
    row = results.table.iloc[int(index)]
    who = row.get("patient_id", row.get("loop"))
    return (str(videos["real"]) if "real" in videos else None,
            str(videos["generated"]) if "generated" in videos else None, f"playing row {index} ({who})")


# --------------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------------


def _guarded(fn, n_outputs: int, status_index: int):
    """``fn`` whose failure becomes one line in its status output (other outputs unchanged)."""
    import functools

    import gradio as gr

    @functools.wraps(fn)  # keeps fn's signature: gradio passes gr.SelectData and gr.Progress by it
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure is shown as one line on the page, never a traceback
            outputs = [gr.update()] * n_outputs
            outputs[status_index] = _problem(exc)
            return tuple(outputs) if n_outputs > 1 else outputs[0]

    return run


def _eta_progress(progress):
    """Wrap a tracked ``gr.Progress`` so that the bar's text says the time left (from the bar's own rate)."""
    update = getattr(progress, "update", None)
    if update is None:
        return progress
    started: dict[int, float] = {}

    def with_eta(n=1):
        with contextlib.suppress(AttributeError, IndexError, TypeError, ZeroDivisionError):
            it = progress.iterables[-1]
            t0 = started.setdefault(id(it), time.monotonic() - 1e-6)
            done = (it.index or 0) + n
            if it.length and done:
                left = (time.monotonic() - t0) / done * (it.length - done)
                base = (it.desc or "").split(" · ")[0]
                it.desc = f"{base} · about {left:.0f} s left"
        return update(n)

    progress.update = with_eta
    return progress


def _export_section(session: _Session, status) -> None:
    """The export accordion of the Generate tab and its button."""
    import gradio as gr

    with gr.Accordion("Export (the writers of echokdm generate)", open=True):
        with gr.Row():
            formats = gr.CheckboxGroup(list(_FORMATS), value=["mp4", "dicom"], label="Formats",
                                       elem_id="formats")
            out = gr.Textbox("echokdm_app_exports", label="Output folder", elem_id="out")
            stem = gr.Textbox("", label="File name stem (empty: <clip>_f<frame>_<motion>)", elem_id="stem")
            overwrite = gr.Checkbox(False, label="Replace existing files", elem_id="overwrite")
        export_button = gr.Button("Export", elem_id="export")
        exported = gr.File(label="Written files", file_count="multiple", elem_id="exported")

    def do_export(o, fm, sm, ow):
        files, text = export_current(session, o, fm, sm, ow)
        return files, text

    export_button.click(_guarded(do_export, 2, 1), [out, formats, stem, overwrite], [exported, status])


def _results_tab(session: _Session, status) -> None:
    """The Results tab: a folder, its table worst first, the row played."""
    import gradio as gr

    with gr.Tab("Results", id="results"):
        with gr.Row():
            folder = gr.Textbox(label="echokdm evaluate or synthesize output folder", elem_id="folder", scale=4)
            folder_button = gr.Button("Open folder", elem_id="open_folder", scale=1)
        table = gr.Dataframe(label="Worst first; click a header to sort, a row to play", interactive=False,
                             elem_id="results_table")
        with gr.Row():
            row_real = gr.Video(label="real", elem_id="row_real", autoplay=True, loop=True, interactive=False)
            row_generated = gr.Video(label="generated", elem_id="row_generated", autoplay=True, loop=True,
                                     interactive=False)

    folder_button.click(_guarded(lambda f: open_results_folder(session, f), 2, 1), [folder], [table, status])

    def do_row(evt: gr.SelectData):
        return play_result_row(session, evt.index[0])

    do_row.__annotations__ = {"evt": gr.SelectData}

    table.select(_guarded(do_row, 3, 2), None, [row_real, row_generated, status])


def build_app(pipeline: str = "kdm_phantom_112", segmentation: str | None = "seg_phantom_112",
              initial: str | None = None, work: str | os.PathLike | None = None):
    """The ``gr.Blocks`` page. ``initial``: a file or manifest opened when the page loads."""
    _quiet_gradio()
    import gradio as gr

    session = _Session(pipeline, segmentation, Path(work or tempfile.mkdtemp(prefix="echokdm_app_")))
    session.work.mkdir(parents=True, exist_ok=True)
    with gr.Blocks(title="echokdm", analytics_enabled=False) as page:
        gr.Markdown("## echokdm: see and steer echo loops  \nLocal app: nothing leaves this machine. "
                    f"Pipeline `{pipeline}`, segmentation `{segmentation or 'none'}`.")
        status = gr.Markdown("", elem_id="status")
        with gr.Tab("Clip", id="clip"):
            with gr.Row():
                path = gr.Textbox(label="File or manifest path (DICOM, AVI/MP4, NIfTI, image, manifest CSV)",
                                  value=initial or "", elem_id="path", scale=4)
                open_button = gr.Button("Open", variant="primary", elem_id="open", scale=1)
            upload = gr.File(label="…or upload a file", elem_id="upload", height=90)
            clip_choice = gr.Dropdown(label="Clip of the manifest", choices=[], elem_id="clip_choice",
                                      allow_custom_value=True)
            with gr.Row():
                clip_video = gr.Video(label="Cine: LV mask, 40 keypoints, volume curve (▲ ED, ▼ ES)",
                                      elem_id="clip_video", autoplay=True, loop=True, interactive=False)
                summary = gr.Markdown(elem_id="summary")
        with gr.Tab("Generate", id="generate"):
            with gr.Row():
                with gr.Column():
                    frame = gr.Slider(0, 1, value=0, step=1, label="Source frame", elem_id="frame")
                    picture = gr.Image(label="Source frame: click a keypoint, then its new place (drag motion)",
                                       elem_id="picture", interactive=False, type="numpy")
                    picked = gr.State(None)
                with gr.Column():
                    motion = gr.Radio([(v, k) for k, v in _MOTION_LABELS.items()], value="own", label="Motion",
                                      elem_id="motion")
                    n_frames = gr.Number(None, label="Frames (own/other beat: at most; drag: loop length)",
                                         precision=0, elem_id="n_frames")
                    other = gr.Textbox(label="Other clip (another clip's beat)", elem_id="other")
                    other_ed = gr.Textbox("", label="Its ED frame (empty: the first ED echokdm ef finds)",
                                          elem_id="other_ed")
                    ef = gr.Slider(10, 85, value=55, step=1, label="EF %", elem_id="ef")
                    heart_rate = gr.Slider(40, 160, value=70, step=1, label="Heart rate (bpm)", elem_id="hr")
                    drags = gr.Dataframe(pd.DataFrame(columns=_DRAG_COLUMNS), headers=_DRAG_COLUMNS,
                                         label="Dragged keypoints (px; edit freely)", interactive=True,
                                         elem_id="drags", datatype="number")
                    with gr.Row():
                        quick = gr.Checkbox(False, label="Quick preview (10 DDIM steps, k = 1)", elem_id="quick")
                        steps = gr.Number(25, label="DDIM steps (paper: 200)", precision=0, elem_id="steps")
                        k = gr.Number(3, label="k (F2I start step; paper: 100)", precision=0, elem_id="k")
                        seed = gr.Number(0, label="Seed", precision=0)
                    generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Row():
                loop_video = gr.Video(label="real | generated", elem_id="loop_video", autoplay=True, loop=True,
                                      interactive=False)
                result = gr.Markdown(elem_id="result")
            _export_section(session, status)
        _results_tab(session, status)

        def do_open(path_text, upload_file, clip_id=None):
            status_text, clips, chosen, video, text, last, pic, ed = open_input(session, path_text, upload_file,
                                                                               clip_id)
            label = (f"Source frame (end-diastole: {ed}; start new-EF and transferred beats there)" if ed
                     else "Source frame")
            return (status_text, gr.update(choices=clips, value=chosen), video, text,
                    gr.update(maximum=max(last, 1), value=0, label=label), pic,
                    pd.DataFrame(columns=_DRAG_COLUMNS), None)

        opened = [status, clip_choice, clip_video, summary, frame, picture, drags, picked]
        open_button.click(_guarded(do_open, len(opened), 0), [path, upload, clip_choice], opened)
        upload.upload(_guarded(lambda u: do_open(None, u), len(opened), 0), [upload], opened)
        clip_choice.input(_guarded(lambda p, u, c: do_open(p, u, c), len(opened), 0), [path, upload, clip_choice],
                          opened)
        if initial:
            page.load(_guarded(lambda p: do_open(p, None), len(opened), 0), [path], opened)

        frame.release(lambda f, r: (frame_view(session, f, r), None), [frame, drags], [picture, picked])
        drags.input(lambda f, r: frame_view(session, f, r), [frame, drags], [picture])

        def do_click(f, r, p, evt: gr.SelectData):
            rows, new_pick, pic, text = click_frame(session, f, r, p, evt.index)
            return rows, new_pick, pic, text, gr.update(value="drag")

        do_click.__annotations__ = {"evt": gr.SelectData}  # a class, not a string gradio cannot resolve here

        picture.select(_guarded(do_click, 5, 3), [frame, drags, picked], [drags, picked, picture, status, motion])

        def do_generate(mo, f, nf, ot, oe, e, hr, r, st, kk, sd, q, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - gradio's way
            _eta_progress(progress)
            video, text = run_generation(session, mo, f, nf, ot, oe, e, hr, r, st, kk, sd, q)
            return video, text, "generated: see real | generated below"

        generate_button.click(_guarded(do_generate, 3, 2),
                              [motion, frame, n_frames, other, other_ed, ef, heart_rate, drags, steps, k, seed, quick],
                              [loop_video, result, status])

    page.echokdm_session = session  # for tests and scripts
    return page


def _theme():
    """Gradio's default look with the system fonts (the default theme fetches Google fonts from the internet)."""
    import gradio as gr

    return gr.themes.Default(font=["system-ui", "Arial", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def launch(page, *, host: str = "127.0.0.1", port: int | None = None, block: bool = True, work=None):
    """Serve ``page`` on ``host:port`` (this machine only by default; never shared through gradio.live).

    Returns the local URL. ``block=False`` returns at once (tests).
    """
    import gradio as gr  # noqa: F401 - imported after _quiet_gradio (build_app)

    allowed = [str(page.echokdm_session.work), str(Path.cwd())]
    _, url, _ = page.launch(server_name=host, server_port=port, share=False, inbrowser=False,
                            prevent_thread_lock=not block, quiet=not block, show_error=False, theme=_theme(),
                            allowed_paths=allowed, footer_links=[], ssr_mode=False, mcp_server=False,
                            enable_monitoring=False, pwa=False)
    return url
