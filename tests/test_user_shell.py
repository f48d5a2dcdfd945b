"""grid in an nnU-Net user's shell: nnUNet_raw, nnUNet_preprocessed, nnUNet_results and the user's own
nnUNet_extTrainer folder exported, a fold trained earlier by hand with nnU-Net's defaults (no --npz). (maps, retrofit,
compare and bench run with the same four variables in their own tests: helpers.nnunet_env sets all of them.)"""
import json
import shutil
import subprocess

import pytest
from helpers import CLI, DATASET_ID, DATASET_NAME, TEST_TRAINERS, TINY_TRAINERS, fold_dir, nnunet_env, run, train

pytestmark = pytest.mark.slow  # plans and trains through nnU-Net's CLIs

UNGATED, GATED = TINY_TRAINERS


@pytest.fixture(scope="module")
def shell(trained_models, tmp_path_factory):
    """A copy of the session's Dataset990 (raw, preprocessed, both tiny trainers on folds 0 and 1) as the user's
    folders, all four variables set as the user's shell sets them."""
    source, _ = trained_models
    root = tmp_path_factory.mktemp("user")
    for folder in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        shutil.copytree(source / folder, root / folder)
    env = nnunet_env(root, nnUNet_extTrainer=str(TEST_TRAINERS), nnUNet_n_proc_DA="0")
    return root, env


def _cli(env, *argv, cwd=None):
    return run([*CLI, *map(str, argv)], env, cwd=cwd)


def test_grid_revalidates_a_fold_trained_by_hand_without_npz_and_finishes_in_one_run(shell):
    root, env = shell
    train(env, UNGATED, "3d_fullres", 2)  # by hand with nnU-Net's defaults (no --npz); the gated fold 2 is missing
    validation = fold_dir(root, UNGATED, "3d_fullres", 2) / "validation"
    assert not list(validation.glob("*.npz"))
    grid = ["grid", "-d", DATASET_ID, "-c", "3d_fullres", "-f", "2", "-tr", UNGATED, GATED, "-device", "cpu",
            "--executor", "local", "--poll-seconds", "1", "-np", "1"]
    dry = _cli(env, *grid, "--dry-run").stdout
    assert f"nnUNetv2_train {DATASET_ID} 3d_fullres 2 -tr {UNGATED} -p nnUNetPlans -device cpu --npz --val" in dry
    result = subprocess.run([*CLI, *map(str, grid)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "grid complete" in result.stdout and "verdict" in result.stdout
    assert list(validation.glob("*.npz"))  # validated again with --npz, not retrained
    assert len(list(fold_dir(root, UNGATED, "3d_fullres", 2).glob("training_log_*.txt"))) == 2
    info = json.loads((root / "nnUNet_results" / DATASET_NAME / "inference_information.json").read_text())
    assert [str(f) for f in info["folds"]] == ["2"]
    status = _cli(env, *grid, "--status").stdout
    assert status.count(" done ") >= 4  # plan, two trainings, find_best
