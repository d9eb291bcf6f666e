"""Micro-benchmarks (pytest-benchmark): the kernels, both implementations."""
