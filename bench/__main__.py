"""``python -m bench [SCENARIO…] [--scale N] [--repeat K] [--quick]``: the benchmark harness.

Runs each scenario's measurements (hub and dlt peers) in fresh processes after one warm-up,
repeats them, prints median and spread of wall time, rows/s, MB/s and peak RSS with the time
per stage, decides each goal (PASS/MISS), and writes bench/results/<date>-<HHMM>.json and .md.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench.scenarios import SCENARIOS, dlt_missing

EPILOG = """scenarios:
{listing}

examples:
  .venv/bin/pip install -e '.[bench]'          # the dlt peers (once)
  .venv/bin/python -m bench --quick            # every scenario at small scale, 1 repeat (< 5 min)
  .venv/bin/python -m bench S1 S6              # full scales, 3 repeats
  .venv/bin/python -m bench S3 --scale 200000 --repeat 5

Sources are prepared once and cached under bench/.work/ (git-ignored; delete it to start afresh), or under
$IEHUB_BENCH_WORK when set.
PostgreSQL scenarios use 127.0.0.1:5432 (or IEHUB_BENCH_PG_URL); a missing server fails them by name.
"""


def parse_scale(text: str) -> int:
    """Rows as 50000, 50k, 1M or 1_000_000."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    mult = 1
    if t.endswith("k"):
        t, mult = t[:-1], 1_000
    elif t.endswith("m"):
        t, mult = t[:-1], 1_000_000
    try:
        value = int(float(t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scale: expected a row count such as 50000, 50k or 1M, not {text!r}")
    if value < 100:
        raise argparse.ArgumentTypeError(f"--scale: at least 100 rows, not {value}")
    return value


def listing() -> str:
    lines = []
    for s in SCENARIOS.values():
        scales = ", ".join(f"{n:,}" for n in s.full_scales)
        quick = ", ".join(f"{n:,}" for n in s.quick_scales)
        lines.append(f"  {s.id}  {s.title} (full: {scales}; --quick: {quick})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench", description=(
                                     "iehub's benchmark harness: every scenario's hub and dlt-peer measurements, "
                                     "each in a fresh process after a warm-up, repeated; median and spread of wall "
                                     "time, rows/s, MB/s, peak RSS and seconds per stage; PASS/MISS per goal."),
                                 epilog=EPILOG.format(listing=listing()),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="S1 … S8 (default: all)")
    ap.add_argument("--scale", type=parse_scale, help="rows of each scenario's main source, replacing its scales")
    ap.add_argument("--repeat", type=int, help="measured repeats after the warm-up (default 3; --quick: 1)")
    ap.add_argument("--quick", action="store_true", help="small scales and 1 repeat: every scenario in minutes")
    ap.add_argument("--seed", type=int, default=7, help="sandbox data seed (default 7)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and their goals, then exit")
    ap.add_argument("--results", type=Path, default=None, help="folder for <date>-<HHMM>.json/.md (default bench/results)")
    return ap


def print_list() -> None:
    for s in SCENARIOS.values():
        print(f"{s.id}  {s.title}")
        print(f"    {s.description}")
        print(f"    scales: full {', '.join(f'{n:,}' for n in s.full_scales)}; "
              f"--quick {', '.join(f'{n:,}' for n in s.quick_scales)}")
        for g in s.goals:
            target = "figure" if g.threshold is None else f"{g.op} {g.threshold:g} {g.unit}"
            print(f"    goal {g.id}: {g.text} ({target})")
    missing = dlt_missing()
    print(f"\npeers (dlt): {missing or 'installed'}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print_list()
        return 0
    wanted = [s.upper() for s in args.scenarios] or list(SCENARIOS)
    unknown = [s for s in wanted if s not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)} (known: {', '.join(SCENARIOS)}; see --list)", file=sys.stderr)
        return 2
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if repeat < 1:
        print("--repeat: at least 1", file=sys.stderr)
        return 2
    scenarios = [SCENARIOS[s] for s in wanted]
    scales = {s.id: ((args.scale,) if args.scale else (s.quick_scales if args.quick else s.full_scales))
              for s in scenarios}
    missing = dlt_missing()
    if missing:
        print(f"peers (dlt): {missing}: the report shows the hub alone", file=sys.stderr)

    from bench import report
    from bench.harness import Harness

    run = Harness(repeat=repeat, quick=args.quick, seed=args.seed).run(scenarios, scales)
    command = "python -m bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    report.print_console(run)
    partial = {s.id for s in scenarios} != set(SCENARIOS) or args.scale is not None
    label = "-".join([*(s.id for s in scenarios), *([str(args.scale)] if args.scale else [])]) if partial else ""
    json_path, md_path = report.write(run, command.strip(), args.results or report.RESULTS, label)
    print(f"\nwritten: {json_path} and {md_path} ({run.seconds / 60:.1f} min)")
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
