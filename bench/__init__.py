"""Benchmarks of speed and memory (issue 7); `python -m bench [NAME ...] [--quick]` runs them."""
