"""Engines claim jobs, run their attempts under per-type limits, retry and cancel them."""
