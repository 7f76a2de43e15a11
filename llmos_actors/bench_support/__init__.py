"""Measuring code for ``llmos bench`` and the pytest-benchmark suite: plain functions over a connected kernel."""
