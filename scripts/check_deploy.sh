#!/usr/bin/env bash
# A gated model moved to another machine, as nnU-Net moves models: nnUNetv2_export_model_to_zip here -> a fresh venv
# (no packages from this environment) with our wheel and what it pulls from the package index ->
# nnUNetv2_install_pretrained_model_from_zip -> nnUNetv2_predict there, compared voxel by voxel with nnUNetv2_predict
# here. Needs a trained gated model in nnUNet_results (e.g. the demo's, see below) and network access for pip.
#
#   nnUNet_raw=nnunet_attention_demo/nnUNet_raw nnUNet_preprocessed=nnunet_attention_demo/nnUNet_preprocessed \
#   nnUNet_results=nnunet_attention_demo/nnUNet_results bash scripts/check_deploy.sh 990 2d nnUNetTrainerAttentionDemo 0 1 2
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 4 ] || { echo "usage: $0 DATASET_ID CONFIGURATION TRAINER FOLD [FOLD ...]"; exit 2; }
dataset=$1; configuration=$2; trainer=$3; shift 3; folds=("$@")
for v in nnUNet_raw nnUNet_preprocessed nnUNet_results; do
  [ -n "${!v:-}" ] || { echo "$v is not set"; exit 2; }
done
work=$(mktemp -d)
images=$(ls -d "$nnUNet_raw"/Dataset$(printf %03d "$dataset")_*/imagesTs)
echo "work folder: $work; test images: $images"

echo "1. export from this machine"
nnUNetv2_export_model_to_zip -d "$dataset" -o "$work/model.zip" -c "$configuration" -tr "$trainer" -f "${folds[@]}"
nnUNetv2_predict -i "$images" -o "$work/here" -d "$dataset" -c "$configuration" -tr "$trainer" -f "${folds[@]}" \
  -device cpu -npp 1 -nps 1 > "$work/predict_here.log" 2>&1

echo "2. the other machine: a fresh venv with our wheel"
pip wheel --no-deps -q -w "$work/dist" .
python -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$work"/dist/nnunet_attention-*.whl > "$work/pip.log" 2>&1
export nnUNet_raw="$work/other/raw" nnUNet_preprocessed="$work/other/preprocessed" nnUNet_results="$work/other/results"
unset nnUNet_extTrainer
PATH="$work/venv/bin:$PATH" nnUNetv2_install_pretrained_model_from_zip "$work/model.zip"
PATH="$work/venv/bin:$PATH" nnUNetv2_predict -i "$images" -o "$work/there" -d "$dataset" -c "$configuration" \
  -tr "$trainer" -f "${folds[@]}" -device cpu -npp 1 -nps 1 > "$work/predict_there.log" 2>&1

echo "3. compare"
python - "$work/here" "$work/there" <<'EOF'
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

here, there = map(Path, sys.argv[1:])
files = sorted(here.glob("*.nii.gz"))
assert files, f"no predictions in {here}"
for f in files:
    a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in (f, there / f.name))
    assert np.array_equal(a, b), f"{f.name}: {int((a != b).sum())} voxels differ"
print(f"   ok: {len(files)} predictions identical voxel for voxel")
EOF
"$work/venv/bin/python" -c "import torch, nnunetv2, nnunet_attention, importlib.metadata as m; print('   the other machine: torch', torch.__version__, 'nnunetv2', m.version('nnunetv2'), 'nnunet-attention', m.version('nnunet-attention'))"
rm -rf "$work"
