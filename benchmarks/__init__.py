"""Benchmarks: `make bench` (or `python -m benchmarks.bench`) writes results.csv and results.md."""
