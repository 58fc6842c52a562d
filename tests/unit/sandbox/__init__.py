"""Tests of the sandbox (simulated source systems)."""
