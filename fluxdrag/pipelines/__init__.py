"""The pipeline layer: one module per method, each a function over explicit inputs (and a settings
dataclass where a method has many knobs) composing ComfyUI's sampling objects (guider, KSAMPLER,
sigmas) with the controllers of ``attention_patches``. Nodes, bench, scripts and tests call these;
see ``docs/architecture.md``."""
