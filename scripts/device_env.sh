# Sourced by the device scripts (scripts/device_realscale.sh, scripts/device_toytrain.sh) on a lent
# GPU machine: unpacks the carried ComfyUI 0.8.0 tarball into a temporary folder ($work), installs
# the carried wheels into $work/site, exports COMFYUI_PATH, PYTHONPATH and PYTHONUNBUFFERED, and
# writes nvidia-smi's report to $OUT. `scripts/device_realscale.sh --prepare`, run here once, fills
# .device/ (git-ignored; name it in the device tool's carry).
DEV=.device
OUT="${OUT:?set OUT to the folder for the results (the device tool sets it)}"
[[ -f "$DEV/ComfyUI.tar.gz" ]] || { echo "$DEV/ComfyUI.tar.gz missing: run scripts/device_realscale.sh --prepare here and carry $DEV" >&2; exit 2; }
t0=$(date +%s)
work=$(mktemp -d /tmp/fluxdrag_device.XXXXXX)
tar xzf "$DEV/ComfyUI.tar.gz" -C "$work"
if compgen -G "$DEV/wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$work/site" "$DEV"/wheels/*.whl
    export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export COMFYUI_PATH="$work/ComfyUI" PYTHONUNBUFFERED=1
(nvidia-smi || true) > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
echo "setup took $(( $(date +%s) - t0 )) s"
