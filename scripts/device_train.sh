#!/usr/bin/env bash
# Both toy models in one device call: the toy FLUX (scripts/device_toytrain.sh, issue 24) and the
# toy Kontext harmonize run (scripts/device_kontexttrain.sh, issue 28) train side by side on the
# one GPU (each is a few million parameters: neither fills it), each with half of the machine's
# cores rendering its scenes. A lent session has about 15 device minutes and a machine takes
# minutes to start, so one call that brings back both checkpoints beats two calls.
#
#   Here, once, in the repository root:   scripts/device_realscale.sh --prepare   (fills .device/)
#   There, with the device tool:          run(command="bash scripts/device_train.sh",
#                                             carry=[".device"], timeout_s=560)
#
# $OUT/flux gets the toy FLUX checkpoint, its train.log and judge.txt; $OUT/kontext the toy Kontext
# checkpoint and its train.log (its record carries harmonize_gain). TRAIN_MINUTES (default 5) is
# each run's training time. Judge both here before any swap (the two scripts' headers say how).
# Check it here on the CPU:
#   OUT=/tmp/x TRAIN_DEVICE=cpu TRAIN_MINUTES=0.2 bash scripts/device_train.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to the folder for the results (the device tool sets it)}"
half=$(( $(nproc) > 4 ? ($(nproc) - 2) / 2 : 1 ))
minutes="${TRAIN_MINUTES:-5}"
device="${TRAIN_DEVICE:-cuda}"
mkdir -p "$OUT/flux" "$OUT/kontext"
steps=()
[[ "$device" == cpu ]] && steps=(--steps 3)
OUT="$OUT/flux" TOYTRAIN_WORKERS=$half TOYTRAIN_MINUTES=$minutes TOYTRAIN_DEVICE=$device \
    bash scripts/device_toytrain.sh "${steps[@]}" > "$OUT/flux/run.log" 2>&1 &
flux=$!
OUT="$OUT/kontext" KTRAIN_WORKERS=$half KTRAIN_MINUTES=$minutes KTRAIN_DEVICE=$device \
    bash scripts/device_kontexttrain.sh "${steps[@]}" > "$OUT/kontext/run.log" 2>&1 &
kontext=$!
wait "$flux"; rc_flux=$?
wait "$kontext"; rc_kontext=$?
echo "toy FLUX exit $rc_flux, toy Kontext exit $rc_kontext"
tail -n 40 "$OUT/flux/run.log" "$OUT/kontext/run.log"
exit $(( rc_flux || rc_kontext ))
