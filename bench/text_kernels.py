"""The standardise pass's C loops against the ways used without them: halfwidth, trim, record hash,
the shapes screened before a cast, the quality prefilters.

    .venv/bin/python bench/text_kernels.py                  # 1,000,000 rows, best of 3
    .venv/bin/python bench/text_kernels.py --rows 200000 --repeat 5

On canonical project rows (bench/quality_gate.py's batch), their titles given what district files
carry (full-width parentheses and digits on most, an ideographic space or a non-breaking space at
an end on some), in the pipeline's chunks (iehub.pipeline.CHUNK_ROWS): seconds of the `halfwidth`
and `trim` normalisers over the titles, of `record_hash` over the rows, of the `date` and
`wan_to_yuan` normalisers over the rows' dates and amounts as text (their screening patterns), and
of the title's mojibake and control-character rules (their prefilters), with the C extensions
(schemas/_utf8.c, schemas/_md5.c) and with the ways used where they were not built (numpy passes,
RE2, DuckDB's md5), best of --repeat; and whether both ways gave the same values. Asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SUFFIXES = ("（一期）", "（２０２４）", "（二期）", "", "　", "\u00a0", "（Ａ区）", "")


def district_titles(table: Any) -> Any:
    """The batch's titles with the district files' full-width forms and stray end spaces."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    picks = np.arange(table.num_rows) % len(SUFFIXES)
    suffix = pa.array(np.asarray(SUFFIXES, dtype=object)[picks].tolist(), pa.string())
    return pc.binary_join_element_wise(table.column("title").combine_chunks(), suffix, "")


def best(fn: Callable[[], list[Any]], repeat: int) -> tuple[float, list[Any]]:
    times, out = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="canonical project rows (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per way; the best is shown (default 3)")
    args = parser.parse_args()

    import pyarrow as pa

    import numpy as np

    from bench.quality_gate import make_batch
    from iehub.pipeline import CHUNK_ROWS
    from quality.arrow_engine import _matches
    from quality.suites import CONTROL_CHARACTERS, MOJIBAKE
    from schemas import get_entity, lineage, normalise
    from schemas.normalise import NORMALISERS

    built = {"schemas/_utf8.c": normalise._utf8 is not None, "schemas/_md5.c": lineage._md5 is not None}
    missing = [name for name, ok in built.items() if not ok]
    if missing:
        sys.exit(f"not built: {', '.join(missing)}; run `make install` (it compiles them), then again")
    started = time.perf_counter()
    table = make_batch(args.rows, 0.0)
    titles = district_titles(table)
    table = table.set_column(table.schema.get_field_index("title"), "title", titles)
    chunks = [pa.Table.from_batches([b]) for b in table.to_batches(max_chunksize=CHUNK_ROWS)]
    print(f"{args.rows:,} project rows in {len(chunks)} chunks of ≤ {CHUNK_ROWS:,} "
          f"(titles {titles.nbytes / 1e6:.0f} MB; generated in {time.perf_counter() - started:.1f} s, not timed)")
    project = get_entity("project")
    dates = [c.column("start_date").combine_chunks().cast(pa.string()) for c in chunks]
    amounts = [(c.column("budget_amount").combine_chunks().cast(pa.float64()) / 10000).cast(pa.string()) for c in chunks]
    cases = {
        "halfwidth (titles)": lambda: [NORMALISERS["halfwidth"](c.column("title")).values for c in chunks],
        "trim (titles)": lambda: [NORMALISERS["trim"](c.column("title")).values for c in chunks],
        "record_hash (rows, incl. the values' text)": lambda: [lineage.record_hash(c, project) for c in chunks],
        "date (ISO text, screened by its shape)": lambda: [NORMALISERS["date"](d).values for d in dates],
        "wan_to_yuan (amounts as text, screened)": lambda: [NORMALISERS["wan_to_yuan"](a).values for a in amounts],
        "mojibake + control rules (titles)": lambda: [
            pa.array(np.concatenate([_matches(c.column("title"), MOJIBAKE), _matches(c.column("title"), CONTROL_CHARACTERS)]))
            for c in chunks],
    }
    saved = normalise._utf8, lineage._md5
    for label, fn in cases.items():
        fast, fast_out = best(fn, args.repeat)
        normalise._utf8, lineage._md5 = None, None
        try:
            slow, slow_out = best(fn, args.repeat)
        finally:
            normalise._utf8, lineage._md5 = saved
        same = all(a.equals(b) for a, b in zip(fast_out, slow_out))
        print(f"  {label:44s} C {fast:6.3f} s   without {slow:6.3f} s   {slow / fast:4.1f}×   "
              f"{'same values' if same else 'VALUES DIFFER'}")


if __name__ == "__main__":
    main()
