"""Torch / OpenMP threads for the machine as it is when a command starts.

On a busy machine (other programs keep the cores busy) torch's default of one thread per core makes
its threads wait for each other: a 2-minute run took 41 minutes at load 5 on 2 cores. The
``echokdm`` command calls :func:`configure_threads` once at start: when other work already keeps
cores busy it uses only the cores left (at least one), and says so in one line on stderr. A thread
count the user set in ``OMP_NUM_THREADS`` is always used as it is.

:func:`choose_threads` is the decision alone, a pure function of the load, the cores and the
environment.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping, MutableMapping

__all__ = ["available_cores", "choose_threads", "configure_threads", "current_load"]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _running_others(samples: int = 5, interval: float = 0.01) -> int | None:
    """Processes running now besides this one (``/proc/loadavg``), the median of a few quick samples."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as handle:
                counts.append(int(handle.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return None
        if i + 1 < samples:
            time.sleep(interval)
    return max(0, sorted(counts)[len(counts) // 2])


def current_load() -> float | None:
    """How many cores other work keeps busy now, or None where the system cannot say.

    The 1-minute load average, but no more than the processes running at this moment besides
    this one (``/proc/loadavg``, where there is one): the average lags by a minute, so right after
    a previous command ended it still counts that command, which the instant count does not.
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    if load >= 1:  # else not busy anyway: no need to look closer
        running = _running_others()
        if running is not None:
            load = min(load, running)
    return float(load)


def choose_threads(load: float | None, cores: int, env: Mapping[str, str]) -> tuple[int, str]:
    """The torch thread count for ``load`` (cores kept busy by other work), ``cores`` and ``env``.

    * ``OMP_NUM_THREADS`` set to a positive integer in ``env``: that number, always.
    * otherwise ``cores`` minus the whole cores that ``load`` keeps busy, at least 1 (``load``
      None, or below one core: every core).

    Returns ``(threads, reason)``; the reason is one sentence for the user.
    """
    cores = max(1, int(cores))
    explicit = str(env.get("OMP_NUM_THREADS", "")).strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit), f"OMP_NUM_THREADS={int(explicit)} (set by you)"
    if load is None or not math.isfinite(load) or load < 1:
        return cores, f"{cores} core(s) free"
    threads = max(1, cores - math.floor(load))
    if threads >= cores:
        return cores, f"{cores} core(s) free"
    return threads, (f"busy machine (load {load:.1f} on {cores} cores): using {threads} torch thread(s) instead "
                     f"of {cores}; set OMP_NUM_THREADS to choose")


def configure_threads(environ: MutableMapping[str, str] | None = None, load: float | None = None,
                      cores: int | None = None, stream=None) -> tuple[int, str]:
    """Apply :func:`choose_threads` to this process (and the processes it starts); once, at start.

    Changes nothing unless the machine is busy and ``OMP_NUM_THREADS`` is not set: then it sets
    ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` in ``environ`` (read by torch when it is imported,
    and inherited by worker processes), calls ``torch.set_num_threads`` if torch is already
    imported, and writes the reason as one line to ``stream`` (stderr). ``environ``, ``load`` and
    ``cores`` default to ``os.environ``, :func:`current_load` and :func:`available_cores`.

    Returns ``(threads, reason)``.
    """
    environ = os.environ if environ is None else environ
    cores = available_cores() if cores is None else cores
    load = current_load() if load is None else load
    threads, reason = choose_threads(load, cores, environ)
    if threads < cores and not str(environ.get("OMP_NUM_THREADS", "")).strip():
        environ["OMP_NUM_THREADS"] = str(threads)
        environ.setdefault("MKL_NUM_THREADS", str(threads))
        if environ is os.environ and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        print(f"echokdm: {reason}", file=stream or sys.stderr)
    return threads, reason
