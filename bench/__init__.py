"""Benchmarks (run as scripts) and the toy-world benchmark ``bench.toybench`` (scenes and model: ``fluxdrag/toyworld/``)."""
