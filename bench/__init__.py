"""Benchmarks (run as scripts) and the toy-world benchmark ``bench.toyworld`` (scenes and model: ``toyworld/``)."""
