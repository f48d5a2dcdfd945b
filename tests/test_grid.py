"""nnunet-attention grid through a real single-node SLURM cluster (sbatch via submitit), in an nnU-Net user's shell
(nnUNet_raw, nnUNet_preprocessed, nnUNet_results and the user's own nnUNet_extTrainer folder exported) where one fold
was trained earlier by hand with nnU-Net's defaults (no --npz): the grid validates that fold again instead of
training it; one job scancel-ed, the grid re-run resumes exactly that fold with --c; then the local executor's dry
run of the same grid finds nothing left to do."""
import json
import shutil
import subprocess
import time

import pytest
import slurm_cluster
from helpers import CLI, DATASET_ID, DATASET_NAME, fold_dir, nnunet_env, run, train

pytestmark = pytest.mark.slow  # plans and trains through nnU-Net's CLIs

DATASET = DATASET_NAME
TRAINERS = ("nnUNetTrainerTiny", "nnUNetTrainerAttentionTinyResumable")
GRID = ["grid", "-d", str(DATASET_ID), "-c", "3d_fullres", "-f", "0", "1", "-tr", *TRAINERS, "-device", "cpu",
        "--poll-seconds", "1", "-np", "1"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = slurm_cluster.missing_binaries()
    if missing:
        pytest.fail(f"SLURM is not installed here (no {', '.join(missing)}); .ci/run installs slurm-wlm and munge")
    folder = tmp_path_factory.mktemp("slurm")
    munge_was_running = subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0
    yield slurm_cluster.start(folder)
    slurm_cluster.stop(folder)
    still_running = [d for d in ("slurmd", "slurmctld", *([] if munge_was_running else ["munged"]))
                     if subprocess.run(["pgrep", "-x", d], capture_output=True).returncode == 0]
    assert not still_running, f"the SLURM fixture left {still_running} running"


@pytest.fixture(scope="module")
def study(slurm, trained_models, tmp_path_factory):
    """A copy of the session's Dataset990 (raw, preprocessed, the ungated tiny trainer's fold 0 trained with --npz)
    as the user's folders, all four variables set as the user's shell sets them; the user trains the ungated fold 1
    by hand with nnU-Net's defaults. The grid finds planning and fold 0 done, validates fold 1 again with --npz and
    trains the gated folds."""
    source, _ = trained_models
    root = tmp_path_factory.mktemp("grid")
    for folder in ("nnUNet_raw", "nnUNet_preprocessed"):
        shutil.copytree(source / folder, root / folder)
    ungated = fold_dir(source, TRAINERS[0], "3d_fullres", 0)
    shutil.copytree(ungated, fold_dir(root, TRAINERS[0], "3d_fullres", 0))
    env = {**nnunet_env(root), **slurm, "nnUNet_n_proc_DA": "0"}  # all four variables, as in a user's shell
    train(env, TRAINERS[0], "3d_fullres", 1)  # by hand, nnU-Net's defaults: no --npz
    assert not list((fold_dir(root, TRAINERS[0], "3d_fullres", 1) / "validation").glob("*.npz"))
    return root, env


def _state(root) -> dict:
    return json.loads((root / "nnUNet_results" / "nnunet_attention_grid" / "state.json").read_text())["jobs"]


def test_grid_on_slurm_survives_scancel_and_resumes_with_continue(study):
    root, env = study
    dry = run([*CLI, *GRID, "--executor", "slurm", "--dry-run"], env).stdout
    # planned, the ungated fold 0 done: the hand-trained fold validated again, two gated trainings, find_best
    lines = dry.splitlines()
    assert sum(line.startswith("todo ") for line in lines) == 1 + 2 + 1 and "--c" not in dry
    assert sum(line.startswith("done ") for line in lines) == 1 + 1
    assert f"nnUNetv2_train {DATASET_ID} 3d_fullres 1 -tr {TRAINERS[0]} -p nnUNetPlans -device cpu --npz --val" in dry

    first = subprocess.Popen([*CLI, *GRID, "--executor", "slurm"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    target = f"train/{DATASET}/3d_fullres/fold_0/{TRAINERS[1]}"
    folder = root / "nnUNet_results" / DATASET / f"{TRAINERS[1]}__nnUNetPlans__3d_fullres" / "fold_0"
    deadline = time.time() + 900
    while time.time() < deadline and not any("Epoch 2" in log.read_text()
                                             for log in folder.glob("training_log_*.txt")):
        assert first.poll() is None, first.stdout.read()
        time.sleep(0.5)
    job_id = _state(root)[target]["job_id"]
    subprocess.run(["scancel", job_id], env=env, check=True)
    output = first.communicate(timeout=900)[0]
    assert first.returncode == 1, output
    assert f"FAILED {target}" in output and "the grid is incomplete" in output
    assert (folder / "checkpoint_latest.pth").is_file() and not (folder / "checkpoint_final.pth").exists()
    finished = {k: v["job_id"] for k, v in _state(root).items() if k != target}

    second = run([*CLI, *GRID, "--executor", "slurm"], env)
    assert "grid complete" in second.stdout
    state = _state(root)
    assert state[target]["job_id"] != job_id and state[target]["command"].endswith("--c")
    assert all(state[k]["job_id"] == v for k, v in finished.items() if k.startswith("train/"))  # not retrained
    assert [k for k in state if TRAINERS[0] in k] == [f"train/{DATASET}/3d_fullres/fold_1/{TRAINERS[0]}"]
    assert (folder / "checkpoint_final.pth").is_file()
    hand_trained = fold_dir(root, TRAINERS[0], "3d_fullres", 1)
    assert list((hand_trained / "validation").glob("*.npz"))  # validated again with --npz, not retrained:
    assert len(list(hand_trained.glob("training_log_*.txt"))) == 2  # the hand training's log and the --val one
    report = root / "nnUNet_results" / DATASET / "nnunet_attention_compare" / "report.json"
    assert json.loads(report.read_text())["complete"]
    info = json.loads((root / "nnUNet_results" / DATASET / "inference_information.json").read_text())
    assert [str(f) for f in info["folds"]] == ["0", "1"]

    status = run([*CLI, *GRID, "--executor", "slurm", "--status"], env).stdout
    rows = [line for line in status.splitlines() if line.startswith("train")]
    assert len(rows) == 4 and all(row.split()[5] == "done" for row in rows)
    columns = [r.split() for r in rows if TRAINERS[1] in r][0]  # step dataset configuration fold trainer state epoch
    assert columns[6] == "3"  # epoch reached: the last of 4 (epochs count from 0)

    local = run([*CLI, *GRID, "--executor", "local", "--dry-run"], env).stdout.splitlines()
    assert not any(line.startswith("todo ") for line in local)  # from nnU-Net's files alone: nothing left to run
    assert sum(line.startswith("done ") for line in local) == 1 + 4 + 1  # plan, four trainings, find_best
