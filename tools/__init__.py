"""Developer helpers shared by tests, benchmarks and scripts (finding ComfyUI, tiny models)."""
