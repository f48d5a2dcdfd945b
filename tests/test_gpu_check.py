"""scripts/gpu_check.py, known to work before a GPU ever sees it: its dry run, and every part at tiny sizes on the
CPU (the same steps it runs on a GPU). Its bench part is also the suite's test of `nnunet-attention bench` on a real
task's plans (--plans, --json)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TEST_TRAINERS

SCRIPT = Path(__file__).parents[1] / "scripts" / "gpu_check.py"


def test_a_bad_limit_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "-o", str(tmp_path), "--dry-run", "--limits", "train=x"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "PART=SECONDS" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_part_out_of_time_names_the_step_it_stopped_and_keeps_the_results(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "-o", str(tmp_path), "--device", "cpu", "--quick",
                             "--parts", "train", "--limits", "train=2"], capture_output=True, text=True)
    assert result.returncode == 1
    part = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]["train"]
    assert part["status"] == "timed out"
    named = re.match(r"part train \(2 s\): its time limit passed during `(\S+ \S+).*` \(stopped; log (\S+)\)$",
                     part["error"])
    assert named and named[1].split()[0] in ("nnunet-attention", "nnUNetv2_convert_MSD_dataset",
                                              "nnUNetv2_plan_and_preprocess"), part["error"]
    assert Path(named[2]).is_file()


def test_dry_run_prints_the_plan_for_cuda(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "-o", str(tmp_path), "--dry-run"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "compile on" in result.stdout and "fp16" in result.stdout and "kernels" in result.stdout
    assert "limits summing to 300 s" in result.stdout  # the default command: the benches, within 8 minutes
    assert [line.split()[0] for line in result.stdout.splitlines()[1:3]] == ["compiled", "eager"]
    assert "then, as a second command: --parts train pairing grid (470 s)" in result.stdout  # also within 8 minutes
    second = subprocess.run([sys.executable, str(SCRIPT), "-o", str(tmp_path), "--dry-run", "--parts", "train",
                             "pairing", "grid"], capture_output=True, text=True).stdout
    assert "nnUNetv2_train" in second and "grid --executor local" in second and "--seed 0" in second
    assert not any(tmp_path.iterdir())  # ran nothing


@pytest.mark.slow  # plans and trains through nnU-Net's CLIs
def test_every_part_runs_on_the_cpu_at_quick_sizes(tmp_path):
    """In a user's shell: nnU-Net's variables and the user's own nnUNet_extTrainer set (bench once crashed there)."""
    users = {k: str(tmp_path / "users" / k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    # one export process per validation and prediction, as every test here (nnU-Net spawns them; each imports torch);
    # the trainings share the cores with the other xdist worker (conftest: one torch thread each)
    env = {**os.environ, **users, "nnUNet_extTrainer": str(TEST_TRAINERS), "nnUNet_def_n_proc": "1",
           "NNUNET_ATTENTION_CPU_SHARE": os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")}
    result = subprocess.run([sys.executable, str(SCRIPT), "-o", str(tmp_path / "out"), "--device", "cpu", "--quick",
                             "--parts", "all"], capture_output=True, text=True, env=env)  # the CPU's time limits
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    bench_log = (tmp_path / "out" / "logs" / "bench_task_3d_fullres_None_eager.log").read_text()
    assert "only supported for cuda" not in bench_log
    assert "train step" in bench_log and "nnUNetPlans.json:3d_fullres" in bench_log
    # bench's trainers (built with nnUNet_preprocessed set) wrote nothing into the nnUNet_results bench was given
    assert not (tmp_path / "out" / "work" / "nnUNet_results" / "bench").exists()
    tmp_path = tmp_path / "out"
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {name: part["status"] for name, part in results["parts"].items()} == {
        "compiled": "skipped", "eager": "ok", "train": "ok", "pairing": "ok", "grid": "ok"}
    (run,) = results["parts"]["eager"]["runs"]  # what bench --json wrote
    for key in ("parameters", "train_step_seconds", "inference_seconds", "planner_estimate", "kernels"):
        assert run[key]["ratio"] > 0 and run[key]["gated"] > 0 and run[key]["ungated"] > 0
    assert run["parameters"]["gated"] > run["parameters"]["ungated"]
    memory = run["activation_memory"]
    assert memory["gated_bytes"] > memory["ungated_bytes"] > 0
    assert 1 < memory["ratio"] < 1.02  # the gates keep under 2% more for backward on this plan (exact: test_cost)
    train = results["parts"]["train"]
    assert train["epoch_ratio"] > 0 and train["maps_over_predict"] > 0
    assert all(len(v) == 2 for v in train["epoch_seconds"].values())
    assert results["parts"]["grid"]["jobs"]  # the folds trained without --npz were validated by grid jobs
    pairing = results["parts"]["pairing"]
    assert pairing["repeat_identical"] and pairing["repeat_max_weight_difference"] == 0  # on the CPU: exactly
    assert pairing["paired_over_unpaired_epoch"] > 0
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "repeats exactly" in markdown
    assert "## GPU table" in markdown and "nnUNetPlans.json:3d_fullres" in markdown
