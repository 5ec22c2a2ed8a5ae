#!/usr/bin/env bash
# Real-scale benchmark (issue 30) on a lent GPU machine, in one command. docs/performance.md
# explains it; in short:
#
#   Here, once, in the repository root (needs ../shared/comfyui and pip's network):
#       scripts/device_realscale.sh --prepare
#   copies ComfyUI 0.8.0's source tarball and the wheels the device image lacks (torchsde and its
#   dependency trampoline: comfy.k_diffusion imports them) into .device/ (git-ignored, ~5 MiB:
#   far under the device tool's 64 MiB carry).
#
#   There, with the device tool: run(command="bash scripts/device_realscale.sh",
#                                     carry=[".device"], timeout_s=540)
#   unpacks ComfyUI into /tmp, installs the wheels into /tmp/site, and runs the whole table
#   (python -m bench.realscale: 512² and 1024², every method and memory lever) with a time budget, so the
#   command ends in under 8 minutes. $OUT receives realscale.json (rewritten after every run, so
#   a cut-off run still returns the rows done), realscale.log and nvidia-smi.txt.
#   Arguments after the script name go to bench.realscale, e.g. --only 'dragflow' to rerun
#   some rows, or --quick to check this script on a CPU (OUT=/tmp/x bash scripts/device_realscale.sh --quick).
#
# Environment: REALSCALE_BUDGET_S (default 330: no run starts later), REALSCALE_TIMEOUT_S
# (default 450: the benchmark is stopped then; setup and the last run fit in the 8 minutes).
# The comfy-kitchen wheel (68 MiB, over the carry limit) is left out: ComfyUI imports it
# optionally, and fp8 weight storage with manual cast does not use it.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=.device

if [[ "${1:-}" == "--prepare" ]]; then
    tarball="${FLUXDRAG_COMFYUI_TARBALL:-../shared/comfyui/ComfyUI-0.8.0.tar.gz}"
    [[ -f "$tarball" ]] || { echo "ComfyUI tarball not found at $tarball; set FLUXDRAG_COMFYUI_TARBALL" >&2; exit 2; }
    mkdir -p "$DEV/wheels"
    cp -f "$tarball" "$DEV/ComfyUI.tar.gz"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$DEV/wheels" torchsde==0.2.6 trampoline==0.1.2
    du -sh "$DEV"
    echo "prepared $DEV; now run on the device: bash scripts/device_realscale.sh (carry [\"$DEV\"])"
    exit 0
fi

source scripts/device_env.sh
set +e
timeout "${REALSCALE_TIMEOUT_S:-450}" python3 -m bench.realscale --out "$OUT/realscale.json" \
    --budget-s "${REALSCALE_BUDGET_S:-330}" "$@" 2>&1 | tee "$OUT/realscale.log"
rc=${PIPESTATUS[0]}
echo "bench exit $rc after $(( $(date +%s) - t0 )) s in all"
rm -rf "$work"
exit "$rc"
