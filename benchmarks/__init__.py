"""Benchmarks: speed measured as ratios within one run, written to benchmarks/results and RESULTS.md."""
