"""Smoke run of the study script on a tiny budget (the study itself runs outside the test suite): it trains, keeps
per-epoch pseudo Dice and per-class validation Dice per run, and resumes without retraining."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # plans and trains through nnU-Net's CLIs

SCRIPT = Path(__file__).parents[1] / "scripts" / "init_study.py"


def test_init_study_script_trains_collects_and_resumes(tmp_path):
    command = [sys.executable, str(SCRIPT), "-o", str(tmp_path), "--runs", "1", "--arm", "3d:4:uniform",
               "--iterations-per-epoch", "2", "--val-iterations", "1", "--cases", "5", "--shape", "16", "48", "48"]
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    study = json.loads((tmp_path / "init_study.json").read_text())
    (run,) = study["runs"]
    assert (run["variant"], run["iterations"], run["configuration"]) == ("uniform", 4, "3d_fullres")
    assert len(run["pseudo_dice_per_epoch"]) == 2 and set(run["validation_dice"]) == {"nodule", "cyst"}
    assert study["default"] == "paper" and "init_study.py" in study["command"]
    assert "| 3d | 4 | uniform |" in (tmp_path / "init_study.md").read_text()
    assert (tmp_path / "init_study_curves.png").stat().st_size > 0
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count("done before") == 1
