"""Why few-step inversion fails on the trained toy model: round trips under controlled changes.

``python -m bench.toybench.inversion_diagnosis [--steps 8]`` inverts six toy scenes (seeds
500–505: single, multi, textured_bg, single, multi, crowded) and samples them back with the
core solvers on the raw toy velocity (no ComfyUI sampler; the same σ grid as ComfyUI's `simple`
FLUX schedule), printing RMS error / source spread per scene for: FireFlow (midpoint with reuse),
midpoint without reuse (2 calls per step), guidance 3.5 instead of 1, time shift mu 0 and 2
instead of 1.15, Uni-Inv → Euler, FireFlow at twice the steps, and the std of the inverted noise.
"""
from __future__ import annotations

import argparse

import torch

from fluxdrag.core import solvers
from fluxdrag.toyworld.model import flux_sigmas, velocity
from fluxdrag.toyworld.scenes import make_scene

FAMS = ["single", "multi", "textured_bg", "single", "multi", "crowded"]


def midpoint(v, x, sig):
    """Plain midpoint method (no reuse): two velocity calls per step."""
    s = sig.tolist()
    for i in range(len(s) - 1):
        d = s[i + 1] - s[i]
        x = x + d * v(x + d / 2 * v(x, s[i]), s[i] + d / 2)
    return x


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from fluxdrag.toyworld.model import load_toy_model
    from tools.comfy_env import import_comfy

    import_comfy()
    import node_helpers

    model, cond0 = load_toy_model()
    dm = model.model.diffusion_model
    xs = torch.stack([make_scene(500 + i, f).latent for i, f in enumerate(FAMS)])
    spread = xs.flatten(1).std(1)
    n = args.steps

    def run(name, inv, smp, g=1.0, steps=n, mu=1.15):
        cond = node_helpers.conditioning_set_values(cond0, {"guidance": g})

        def v(x, s):
            return velocity(dm, x, s, cond)

        sig = flux_sigmas(steps, mu).flip(0)
        with torch.no_grad():
            z = inv(v, xs, sig)
            out = smp(v, z, sig.flip(0))
        rel = ((out - xs).flatten(1).pow(2).mean(1).sqrt() / spread).tolist()
        print(f"{name:34s} steps {steps:3d} g {g} mu {mu}: " + " ".join(f"{r:.3f}" for r in rel)
              + f" | mean {sum(rel) / len(rel):.3f} | noise std {float(z.std()):.2f}", flush=True)

    F, U, E = solvers.fireflow, solvers.uni_inv, solvers.euler
    run("fireflow", F, F)
    run("midpoint (no reuse)", midpoint, midpoint)
    run("fireflow, guidance 3.5", F, F, g=3.5)
    run("fireflow, mu 0", F, F, mu=0.0)
    run("fireflow, mu 2", F, F, mu=2.0)
    run("uni_inv -> euler", U, E)
    run("fireflow, twice the steps", F, F, steps=2 * n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
