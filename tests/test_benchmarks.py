"""benchmarks/run_all.py: which scripts it runs, how it gathers their figures, the markdown summary.
(The benchmarks themselves run in CI through ``python benchmarks/run_all.py --quick``.)"""

import json
import runpy
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def run_all(tmp_path, monkeypatch):
    """run_all's namespace, pointed at a temporary benchmarks folder with two tiny scripts."""
    (tmp_path / "results").mkdir()
    (tmp_path / "_common.py").write_text("")
    (tmp_path / "good.py").write_text(
        "import json, sys\nfrom pathlib import Path\n"
        "name = 'good_quick' if '--quick' in sys.argv else 'good'\n"
        "out = {'figures': {'frames_per_s': 12.5, 'argv': sys.argv[1:], 'sweep': [{'steps': 25, 'mse': 0.01}]}}\n"
        "(Path(__file__).parent / 'results' / f'{name}.json').write_text(json.dumps(out))\n")
    (tmp_path / "bad.py").write_text("import sys\nprint('went wrong', file=sys.stderr)\nsys.exit(3)\n")
    (tmp_path / "trainer.py").write_text("import sys\n\nRUN_ALL = False\nsys.exit(2)\n")  # needs arguments: left out
    namespace = runpy.run_path(str(BENCHMARKS / "run_all.py"))
    main = namespace["main"]
    monkeypatch.setitem(main.__globals__, "HERE", tmp_path)
    monkeypatch.setitem(main.__globals__, "RESULTS", tmp_path / "results")
    main.__globals__["__file__"] = str(tmp_path / "run_all.py")
    return main, tmp_path


def test_the_benchmark_folder_holds_the_new_benchmarks():
    names = {p.stem for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")}
    assert {"generation", "preprocess", "run_all", "realism", "keypoints_robust", "seg_sim2real", "kdm_real",
            "flow_sim2real"} <= names


def test_run_all_gathers_figures_and_reports_failures(run_all, capsys):
    main, folder = run_all
    assert main(["--quick"]) == 1  # bad.py failed
    summary = json.loads((folder / "results" / "summary_quick.json").read_text())
    assert set(summary["benchmarks"]) == {"bad", "good"}
    good, bad = summary["benchmarks"]["good"], summary["benchmarks"]["bad"]
    assert good["returncode"] == 0 and good["results"]["good_quick"]["argv"] == ["--quick"]
    assert bad["returncode"] == 3 and "went wrong" in bad["output_tail"] and bad["results"] == {}
    markdown = (folder / "results" / "summary_quick.md").read_text()
    assert "| frames_per_s | 12.5 |" in markdown and "FAILED (exit 3)" in markdown
    assert "steps 25, mse 0.01" in markdown
    assert not (folder / "results" / "summary.json").exists()  # a quick run never replaces the full summary


def test_run_all_only_keeps_the_other_records(run_all):
    main, folder = run_all
    main([])
    first = json.loads((folder / "results" / "summary.json").read_text())["benchmarks"]["bad"]
    assert main(["--only", "good"]) == 0
    summary = json.loads((folder / "results" / "summary.json").read_text())
    assert summary["benchmarks"]["bad"] == first and summary["benchmarks"]["good"]["results"]["good"]["argv"] == []
    with pytest.raises(SystemExit, match="no such benchmark"):
        main(["--only", "absent"])


def test_generation_and_preprocess_parse_their_options():
    for name in ("generation", "preprocess", "realism", "seg_sim2real", "kdm_real", "flow_sim2real"):
        namespace = runpy.run_path(str(BENCHMARKS / f"{name}.py"))
        with pytest.raises(SystemExit) as exit_info:
            namespace["main"](["--help"])
        assert exit_info.value.code == 0


def test_motion_tracking_trackers_carry_keypoints_as_the_package_does():
    """``motion_tracking.py --trackers`` tracks with each estimator the way ``track_keypoints`` does:
    with TV-L1 it gives the package's own track, and every tracker follows a moving texture."""
    import sys

    import numpy as np
    from scipy.ndimage import gaussian_filter

    from echokdm.generation.tracking import track_keypoints

    sys.path.insert(0, str(BENCHMARKS))
    namespace = runpy.run_path(str(BENCHMARKS / "motion_tracking.py"))
    base = gaussian_filter(np.random.default_rng(0).random((64, 64)), 1.5)
    base = ((base - base.min()) / (base.max() - base.min())).astype(np.float32)
    frames = np.stack([np.roll(base, t, axis=1) for t in range(5)])  # 1 px right per frame
    kp = np.array([[20.0, 20.0], [40.0, 30.0]])
    trackers = namespace["_trackers"]()
    assert len(trackers) == 5 and next(iter(trackers)).startswith("TV-L1, attachment 10")
    default = namespace["_track_with"](trackers["TV-L1, attachment 10 (default)"], frames, kp)
    np.testing.assert_allclose(default, track_keypoints(frames, kp, max_size=None), atol=1e-3)
    for name in ("TV-L1 on frames scaled to their 99.5th pct", "iterative Lucas-Kanade, radius 7"):
        moved = namespace["_track_with"](trackers[name], frames, kp)[-1] - kp
        np.testing.assert_allclose(moved, [[4, 0], [4, 0]], atol=0.5, err_msg=name)
