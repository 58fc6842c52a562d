"""Run one measurement in a fresh Python process and read back what it measured.

Why a process per run: each run's peak RSS must be its own (a parent that imported DuckDB,
Great Expectations or dlt once would carry that memory into every figure), and no run may
profit from caches another run warmed inside the interpreter. The child reports its own peak
RSS: ``VmHWM`` of its address space (native memory included: DuckDB, Arrow, connectorx), and
the largest of the processes it started and waited for. Not ``wait4``/``RUSAGE_CHILDREN`` from
the parent: Linux carries the forking parent's high-water mark into the child's ``ru_maxrss``
across exec, so a harness holding a million generated rows would lend every run its memory.

The child prints one line ``BENCH-RESULT {json}``: the timed seconds of the work itself
(imports excluded and reported apart), rows, bytes read from the source, seconds per stage.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "BENCH-RESULT "
#: environment the hub reads; a child must not inherit a developer's settings (another catalog, home…)
_HUB_ENV_PREFIXES = ("IEHUB_", "AIRFLOW__", "RUNTIME__", "DESTINATION__", "SOURCES__", "NORMALIZE__", "LOAD__",
                     "DATA_WRITER__", "EXTRACT__")


class RunFailed(RuntimeError):
    """A measurement's process failed or printed no result; the message carries its last stderr lines."""


@dataclass(frozen=True)
class Measure:
    """What one child process runs: a measure function by name and its JSON parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """Identity for sharing a measurement between scenarios within one harness run."""
        return json.dumps({"measure": self.name, "params": self.params}, sort_keys=True, default=str)


@dataclass
class RunResult:
    seconds: float
    rows: int | None
    bytes: int | None
    stages: dict[str, float]
    peak_rss_mb: float
    imports_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "rows": self.rows, "bytes": self.bytes, "stages": self.stages,
                "peak_rss_mb": self.peak_rss_mb, "imports_seconds": self.imports_seconds, "extra": self.extra}


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without hub/dlt settings, plus the repo on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_HUB_ENV_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    env["RUNTIME__LOG_LEVEL"] = "WARNING"
    env.update(extra or {})
    return env


def parse_result(stdout: str) -> dict[str, Any]:
    """The last ``BENCH-RESULT`` line of a child's output, as a dict."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            payload = json.loads(line[len(RESULT_PREFIX):])
            if not isinstance(payload, dict) or "seconds" not in payload:
                raise RunFailed(f"result line without 'seconds': {line[:200]}")
            return payload
    raise RunFailed("the run printed no BENCH-RESULT line")


def run_measure(measure: Measure, *, work_dir: Path, timeout: float) -> RunResult:
    """Run `measure` in a fresh interpreter; its scratch directory is removed afterwards."""
    work_dir.mkdir(parents=True, exist_ok=True)
    scratch = work_dir / f"run-{uuid.uuid4().hex[:12]}"
    scratch.mkdir()
    spec = json.dumps({"measure": measure.name, "params": measure.params, "scratch": str(scratch)})
    out_path, err_path = scratch.with_suffix(".out"), scratch.with_suffix(".err")
    try:
        with open(out_path, "w", encoding="utf-8") as out, open(err_path, "w", encoding="utf-8") as err:
            proc = subprocess.Popen([sys.executable, "-m", "bench.run_one", spec], cwd=REPO, env=child_env(),
                                    stdout=out, stderr=err, start_new_session=True)
            timed_out = threading.Event()

            def kill() -> None:
                timed_out.set()
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

            timer = threading.Timer(timeout, kill)
            timer.start()
            t0 = time.perf_counter()
            try:
                _, status, _usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen not to wait again
            elapsed = time.perf_counter() - t0
        stdout = out_path.read_text(encoding="utf-8", errors="replace")
        stderr = err_path.read_text(encoding="utf-8", errors="replace")
        if timed_out.is_set():
            raise RunFailed(f"{measure.name} killed after {timeout:.0f}s (timeout); last stderr:\n{_tail(stderr)}")
        if proc.returncode != 0:
            raise RunFailed(f"{measure.name} exited with {proc.returncode} after {elapsed:.1f}s:\n{_tail(stderr)}")
        payload = parse_result(stdout)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        out_path.unlink(missing_ok=True)
        err_path.unlink(missing_ok=True)
    if payload.get("peak_rss_mb") is None:
        raise RunFailed(f"{measure.name} reported no peak RSS")
    return RunResult(seconds=float(payload["seconds"]), rows=payload.get("rows"), bytes=payload.get("bytes"),
                     stages={k: float(v) for k, v in (payload.get("stages") or {}).items()},
                     peak_rss_mb=float(payload["peak_rss_mb"]), imports_seconds=payload.get("imports_seconds"),
                     extra=payload.get("extra") or {})


#: the highest VmHWM seen before a reset_peak() (a reset starts a new high-water mark)
_EARLIER_PEAK_MB = 0.0


def _own_hwm_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> float:
    """The peak RSS since the last reset (MiB), then a new high-water mark starts (Linux ``clear_refs`` 5).

    Lets a measure report the peak of each stage while :func:`peak_rss_mb` still reports the
    whole run's. Where the reset is refused, the marks are cumulative (each stage's figure is
    then the peak up to its end) and the whole-run peak is still right.
    """
    global _EARLIER_PEAK_MB
    peak = _own_hwm_mb()
    _EARLIER_PEAK_MB = max(_EARLIER_PEAK_MB, peak)
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        pass
    return peak


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM, MiB, over every reset_peak()), or that of a process it started
    and waited for if larger."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return max(_own_hwm_mb(), _EARLIER_PEAK_MB, children)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no stderr)"


def child_main(argv: list[str]) -> int:
    """Entry point of ``python -m bench.run_one SPEC``: run the measure, print its result line."""
    if len(argv) != 1:
        print("usage: python -m bench.run_one '{\"measure\": NAME, \"params\": {...}, \"scratch\": DIR}'",
              file=sys.stderr)
        return 2
    spec = json.loads(argv[0])
    from bench.measures import MEASURES

    name = spec["measure"]
    if name not in MEASURES:
        print(f"unknown measure {name!r} (known: {', '.join(sorted(MEASURES))})", file=sys.stderr)
        return 2
    scratch = Path(spec.get("scratch") or tempfile.mkdtemp(prefix="iehub-bench-"))
    result = MEASURES[name](spec.get("params") or {}, scratch)
    result["peak_rss_mb"] = peak_rss_mb()
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
    return 0
