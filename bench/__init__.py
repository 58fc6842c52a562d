"""Benchmarks that print figures: `python -m bench` (the harness) and one script per area.

Not part of the installed package; runs from the repository root.
"""
