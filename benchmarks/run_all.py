"""Run every benchmark and gather their figures into one summary.

    python benchmarks/run_all.py [--quick] [--device cpu|cuda] [--only NAME ...] [--skip NAME ...]

Every ``benchmarks/<name>.py`` (not this file, not ``_``-prefixed helpers, not a script with a
``RUN_ALL = False`` line: those need a trained run or data given on their command line) runs in its own process,
one after the other, with ``--quick`` when given, and with ``--device cuda`` when asked for and the
script accepts ``--device`` (the others are numpy-only or CPU-only and run as they are). A failing
benchmark does not stop the others: its exit code and the end of its output are in the summary,
and this command exits non-zero. The JSON files each script writes to ``benchmarks/results/``
during the run are gathered into

* ``benchmarks/results/summary.json``: the machine, the load average before and after, every
  benchmark's wall time, exit code and figures;
* ``benchmarks/results/summary.md``: the same as tables, one per benchmark (lists and nested
  tables, such as the DDIM sweep, in compact form).

With ``--quick`` (CI: figures printed, no thresholds) they are ``summary_quick.json`` and
``summary_quick.md``, so that a smoke run never replaces the full figures. With ``--only`` or
``--skip`` the other benchmarks' records of the existing summary (same device) are kept; each
record says when it ran and at what load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _benchmarks() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_") and p.name != Path(__file__).name
                  and "\nRUN_ALL = False" not in p.read_text(encoding="utf-8"))


def _accepts_device(script: Path) -> bool:
    """Whether the script's ``--help`` lists ``--device``."""
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300,
                          check=False)
    return "--device" in done.stdout


def _stamps() -> dict[Path, int]:
    """Modification times of the results' JSON files (summaries left out)."""
    return {p: p.stat().st_mtime_ns for p in RESULTS.glob("*.json") if not p.name.startswith("summary")}


def _run(script: Path, quick: bool, device: str) -> dict:
    """Run one benchmark; its record: command, exit code, seconds, the JSON files it wrote, output tail."""
    command = [sys.executable, str(script)] + (["--quick"] if quick else [])
    if device != "cpu" and _accepts_device(script):
        command += ["--device", device]
    print(f"== {script.name}: {' '.join(command[1:])}", flush=True)
    before = _stamps()
    started, load = time.time(), [round(x, 2) for x in os.getloadavg()]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.time() - started
    output = done.stdout + done.stderr
    print(done.stdout[-4000:], end="", flush=True)
    if done.returncode:
        print(done.stderr[-4000:], end="", file=sys.stderr, flush=True)
    written = sorted(p for p, stamp in _stamps().items() if before.get(p) != stamp)
    figures = {}
    for path in written:
        try:
            figures[path.stem] = json.loads(path.read_text()).get("figures", {})
        except (OSError, json.JSONDecodeError) as exc:
            figures[path.stem] = {"error": f"{type(exc).__name__}: {exc}"}
    return {"command": " ".join(["python", *[str(Path(c).relative_to(HERE.parent)) if c == str(script) else c
                                             for c in command[1:]]]),
            "returncode": done.returncode, "seconds": round(seconds, 1),
            "ran_at": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)), "load_average_start": load,
            "load_average_end": [round(x, 2) for x in os.getloadavg()], "results": figures,
            "output_tail": output[-2000:] if done.returncode else ""}


def _earlier(path: Path, args: argparse.Namespace) -> dict:
    """The benchmarks of an earlier summary on the same device (kept when only some are run again)."""
    if not path.exists():
        return {}
    try:
        earlier = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return earlier.get("benchmarks", {}) if earlier.get("device") == args.device else {}


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "<br>".join(", ".join(f"{k} {_cell(v)}" for k, v in row.items()) for row in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_cell(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(summary: dict) -> str:
    machine = summary["machine"]
    lines = [f"# Benchmarks{' (quick mode: smoke run, not figures to quote)' if summary['quick'] else ''}", "",
             (f"Machine: {machine['processor']}, {machine['cpus']} CPUs, Python {machine['python']}, torch "
              f"{machine['torch']}, device {summary['device']}{', ' + machine['gpu'] if machine.get('gpu') else ''}. "
              f"Load average before / after the last run: {summary['load_average_start']} / "
              f"{summary['load_average_end']}, {summary['seconds']} s."), ""]
    for name, record in summary["benchmarks"].items():
        status = "ok" if record["returncode"] == 0 else f"FAILED (exit {record['returncode']})"
        lines += [f"## {name}", "", (f"`{record['command']}`: {status}, {record['seconds']} s, run {record['ran_at']}, "
                                    f"load average {record['load_average_start']} → {record['load_average_end']}"), ""]
        for result, figures in record["results"].items():
            lines += [f"**{result}**", "", "| figure | value |", "|---|---|"]
            lines += [f"| {key} | {_cell(value)} |" for key, value in figures.items()]
            lines.append("")
        if record["output_tail"]:
            lines += ["```", record["output_tail"].strip()[-1500:], "```", ""]
    return "\n".join(lines)


def _machine(device: str) -> dict:
    import torch

    machine = {"python": platform.python_version(), "processor": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if device == "cuda" and torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name()
    return machine


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark in its quick mode (CI)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="passed to the benchmarks that accept --device (default cpu)")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run only these (e.g. generation)")
    parser.add_argument("--skip", nargs="+", default=[], metavar="NAME", help="leave these out")
    args = parser.parse_args(argv)
    scripts = [s for s in _benchmarks() if (args.only is None or s.stem in args.only) and s.stem not in args.skip]
    unknown = set(args.only or []) - {s.stem for s in _benchmarks()}
    if unknown:
        raise SystemExit(f"no such benchmark(s): {', '.join(sorted(unknown))}; available: "
                         f"{', '.join(s.stem for s in _benchmarks())}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    stem = "summary_quick" if args.quick else "summary"
    summary = {"quick": args.quick, "device": args.device, "machine": _machine(args.device),
               "load_average_start": [round(x, 2) for x in os.getloadavg()],
               "benchmarks": _earlier(RESULTS / f"{stem}.json", args) if args.only or args.skip else {}}
    for script in scripts:
        summary["benchmarks"][script.stem] = _run(script, args.quick, args.device)
    summary["benchmarks"] = dict(sorted(summary["benchmarks"].items()))
    summary["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    summary["seconds"] = round(time.time() - started, 1)
    (RESULTS / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    (RESULTS / f"{stem}.md").write_text(_markdown(summary))
    failed = [s.stem for s in scripts if summary["benchmarks"][s.stem]["returncode"]]
    print(f"summary: {RESULTS / (stem + '.json')}, {RESULTS / (stem + '.md')}; {len(scripts)} benchmark(s) in "
          f"{summary['seconds']} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
