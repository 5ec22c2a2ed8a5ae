#!/usr/bin/env bash
# Toy FLUX v3 training (issue 24) on a lent GPU machine, in one command: minutes there are hours
# on this project's CPUs. docs/toyworld_v3.md ("A GPU session") explains the recipe.
#
#   Here, once, in the repository root:   scripts/device_realscale.sh --prepare   (fills .device/)
#   There, with the device tool:          run(command="bash scripts/device_toytrain.sh",
#                                             carry=[".device"], timeout_s=560)
#
# It trains on the GPU for TOYTRAIN_MINUTES (default 6; scenes rendered ahead by CPU workers),
# from the committed resume point bench/toybench/checkpoints/toyflux_v3_train.* unless the
# arguments say otherwise (they go to bench.toybench.train and override the defaults below, e.g.
# --init '' --config '{"hidden_size": 192, "num_heads": 3}' for a wider model from scratch), saves
# fp16 weights with their record and loss log to $OUT (under the tool's 16 MiB a file), then judges
# them on the machine's CPUs: the generation check (seed 21) and the texture judgement on seeds
# 11, 12 and 13, into $OUT/judge.txt. Check it here with a few CPU steps:
#   OUT=/tmp/x TOYTRAIN_DEVICE=cpu TOYTRAIN_MINUTES=0.2 bash scripts/device_toytrain.sh --steps 3
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh
FAM="single multi crowded parts border overlap large lit lit texture texture texture texture occlusion occlusion articulated articulated"
minutes="${TOYTRAIN_MINUTES:-6}"
device="${TOYTRAIN_DEVICE:-cuda}"
workers="${TOYTRAIN_WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))}"
set +e
# shellcheck disable=SC2086
timeout $(( ${minutes%.*} * 60 + 120 )) python3 -m bench.toybench.train \
    --init bench/toybench/checkpoints/toyflux_v3_train.safetensors --out "$OUT/toyflux_v3_train.safetensors" \
    --seed "${TOYTRAIN_SEED:-31}" --device "$device" --workers "$workers" --threads 4 --no-bf16 \
    --lr 1.5e-4 --warmup 50 --steps 20000 --batch 16 --small-frac 0.2 --t-mu 0 --fix-frac 1 --fix-weight 6 \
    --families $FAM --no-plots --max-minutes "$minutes" --save-minutes 2 --save-dtype fp16 "$@" 2>&1 \
    | tee "$OUT/train.log"
rc=${PIPESTATUS[0]}
echo "training exit $rc after $(( $(date +%s) - t0 )) s"
ck="$OUT/toyflux_v3_train.safetensors"
if [[ -f "$ck" ]]; then
    {
        python3 -m bench.toybench.generation --model "$ck" --scenes 6 --seed 21 --threads 8
        for s in 11 12 13; do
            python3 -m bench.toybench.represent --model "$ck" --families single multi texture lit occlusion articulated \
                --scenes 4 --seed "$s" --no-roundtrips --threads 8
        done
    } 2>&1 | tee "$OUT/judge.txt"
fi
rm -rf "$work"
exit "$rc"
