#!/usr/bin/env bash
# Toy Kontext "harmonize" training (issue 28: lit shading) on a lent GPU machine, in one command.
# On the CPU the toy Kontext learnt no relighting from ~7300 harmonize pairs (docs/contextdrag.md,
# "Can the toy Kontext learn to relight?"); scene rendering costs ~4 ms, so 14 workers feed a GPU
# two orders of magnitude more distinct pairs in the same minutes.
#
#   Here, once, in the repository root:   scripts/device_realscale.sh --prepare   (fills .device/)
#   There, with the device tool:          run(command="bash scripts/device_kontexttrain.sh",
#                                             carry=[".device"], timeout_s=560)
#
# It trains for KTRAIN_MINUTES (default 6) from the committed resume point
# bench/toybench/checkpoints/toykontext_train.* (extra arguments go to bench.toybench.train_kontext
# and override the defaults below), saves fp16 weights with their record and loss log to $OUT, and
# the record carries the CPU evaluations (eval losses, keep sample RMS, harmonize_gain). Judge the
# weights here before any swap: harmonize_gain's ratio well under 1 on its held-out pairs, then
# ContextDrag's lit shading against cut_paste on fresh seeds (run.py --kontext), contextdrag_keep's
# BG ≤ 0.02, then recalibrate tests/test_tier2_toyworld_contextdrag.py. Check it here on the CPU:
#   OUT=/tmp/x KTRAIN_DEVICE=cpu KTRAIN_MINUTES=0.2 bash scripts/device_kontexttrain.sh --steps 3
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh
minutes="${KTRAIN_MINUTES:-6}"
device="${KTRAIN_DEVICE:-cuda}"
workers="${KTRAIN_WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))}"
set +e
timeout $(( ${minutes%.*} * 60 + 150 )) python3 -m bench.toybench.train_kontext \
    --init bench/toybench/checkpoints/toykontext_train.safetensors --out "$OUT/toykontext_train.safetensors" \
    --seed "${KTRAIN_SEED:-41}" --device "$device" --workers "$workers" --threads 4 \
    --lr 2e-4 --warmup 50 --steps 100000 --batch 32 --small-batch 64 --small-frac 0.2 \
    --task-mix 0.4 0.15 0.1 0.35 --no-plots --max-minutes "$minutes" --save-minutes 2 --save-dtype fp16 "$@" 2>&1 \
    | tee "$OUT/train.log"
rc=${PIPESTATUS[0]}
echo "training exit $rc after $(( $(date +%s) - t0 )) s"
rm -rf "$work"
exit "$rc"
