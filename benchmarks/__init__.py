"""Benchmarks: scripts that measure the service against local servers (not tests).

Run one with `python -m benchmarks.<name> --help`, e.g. `python -m benchmarks.rate_limit`.
"""
