"""``python -m bench.run_one SPEC``: one measurement in this (fresh) process; see bench/runner.py."""
from __future__ import annotations

import sys

from bench.runner import child_main

if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
