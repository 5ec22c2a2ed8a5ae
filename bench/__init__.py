"""Benchmarks (run as scripts) and the toy world package ``bench.toyworld``."""
