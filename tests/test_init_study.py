"""Smoke run of the initialisation study script on a tiny budget (the study itself runs outside the test suite)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # plans and trains through nnU-Net's CLIs

SCRIPT = Path(__file__).parents[1] / "scripts" / "init_study.py"


def test_init_study_script_trains_collects_and_resumes(tmp_path):
    command = [sys.executable, str(SCRIPT), "-o", str(tmp_path), "--runs", "1", "--epochs", "2", "--iterations", "2",
               "--val-iterations", "1", "--cases", "5", "--shape", "16", "48", "48", "--variants", "uniform",
               "--tasks", "3d"]
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    study = json.loads((tmp_path / "study.json").read_text())
    entry = study["tasks"]["3d"]["uniform"]
    assert len(entry["pseudo_dice_per_epoch"]) == 1 and len(entry["pseudo_dice_per_epoch"][0]) == 2
    assert 0 <= entry["validation_dice"][0] <= 1
    assert "| uniform |" in (tmp_path / "study.md").read_text() and (tmp_path / "study_curves.png").is_file()
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count("done before") == 1
