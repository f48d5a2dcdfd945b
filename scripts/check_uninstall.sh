#!/usr/bin/env bash
# Checks that installing, moving, uninstalling and reinstalling nnunet-attention leaves Python and nnU-Net working:
#   1. uninstall: a fresh interpreter starts silently, nnUNetv2_train -h works, no nnunet_attention .pth is left;
#   2. reinstall (editable): discovery registers our trainer folder again;
#   3. an editable install whose checkout was moved: one warning line at interpreter start, no traceback.
# Run it from the repository root in an environment where nnunetv2 is installed; it ends with the editable install
# of this checkout in place again. Usage: bash scripts/check_uninstall.sh
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$(pwd)
site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
fail() { echo "FAIL: $*"; exit 1; }

echo "1. uninstall"
pip uninstall -y -q nnunet-attention
err=$(cd /tmp && python -c "pass" 2>&1) || fail "python does not start"
[ -z "$err" ] || fail "python prints at start: $err"
(cd /tmp && nnUNetv2_train -h >/dev/null) || fail "nnUNetv2_train -h"
ls "$site" | grep -qi nnunet_attention && fail "left in site-packages: $(ls "$site" | grep -i nnunet_attention)"
echo "   ok: silent start, nnUNetv2_train -h works, nothing left in $site"

echo "2. reinstall"
pip install -q --no-deps -e "$checkout"
folder=$(cd /tmp && python -c "import os; print(os.environ['nnUNet_extTrainer'])")
[ "$folder" = "$checkout/nnunet_attention/model/ext_trainers" ] || fail "discovery registered '$folder'"
echo "   ok: nnUNet_extTrainer=$folder"

echo "3. moved editable checkout"
moved=$(mktemp -d)/checkout
cp -r "$checkout" "$moved"
pip install -q --no-deps -e "$moved"
mv "$moved" "$moved.away"
err=$(cd /tmp && python -c "pass" 2>&1) || fail "python does not start with a moved checkout"
[ "$(echo "$err" | wc -l)" -eq 1 ] && ! echo "$err" | grep -q Traceback || fail "expected one warning line, got: $err"
echo "   ok: one line: $err"
mv "$moved.away" "$moved"
pip uninstall -y -q nnunet-attention
pip install -q --no-deps -e "$checkout"
rm -rf "$(dirname "$moved")"
echo "all checks passed; the editable install of $checkout is back in place"
