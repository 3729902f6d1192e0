"""Benchmark scripts (run as `python benchmarks/<name>.py`); a package so that tests can import their arithmetic."""
