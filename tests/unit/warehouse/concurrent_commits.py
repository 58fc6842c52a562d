"""Worker for the concurrency tests: one process landing batches into a shared catalog.

Run as ``python concurrent_commits.py URL WORKER COUNT GO_FILE``; waits until GO_FILE exists
so all workers start together, commits COUNT batches, prints their landed_seqs as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from warehouse.catalog import BatchRecord, Catalog


def main(url: str, worker: str, count: int, go_file: Path) -> None:
    catalog = Catalog(url)
    while not go_file.exists():
        time.sleep(0.005)
    seqs = []
    for i in range(count):
        now = datetime.now(timezone.utc)
        seqs.append(
            catalog.commit_batch(
                BatchRecord(
                    batch_id=f"{worker}-notice-{i}",
                    source=worker,
                    entity="notice",
                    window_start=str(i),
                    window_end=str(i + 1),
                    rows_in=3,
                    rows_loaded=2,
                    rows_quarantined=1,
                    started_at=now,
                    finished_at=now,
                    std_path=f"lake/std/notice/source={worker}/dt=2025-03-01/{worker}-{i}.parquet",
                ),
                state={"updated_since": f"2025-03-01T00:00:{i:02d}"},
            )
        )
    catalog.dispose()
    print(json.dumps(seqs))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
