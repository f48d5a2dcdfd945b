"""Shared fixtures: a tiny generated MSD task taken through nnU-Net's real conversion, planning and preprocessing."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_attention.synth import write_msd_task

TESTS = Path(__file__).parent
TEST_TRAINERS = TESTS / "ext_trainers"
DATASET_ID = 990
DATASET_NAME = "Dataset990_AttentionSynth"
# small volumes, anisotropic spacing (about 3 x 1 x 1 mm): planning gives [1, 2, 2] strides
TINY_SHAPE = (16, 48, 48)


def nnunet_env(root: Path, **extra) -> dict:
    env = dict(os.environ)
    env.update(nnUNet_raw=str(root / "nnUNet_raw"), nnUNet_preprocessed=str(root / "nnUNet_preprocessed"),
               nnUNet_results=str(root / "nnUNet_results"), nnUNet_extTrainer=str(TEST_TRAINERS),
               nnUNet_def_n_proc="1", nnUNet_compile="f")
    env.update(extra)
    return env


def run(command, env, cwd=None) -> subprocess.CompletedProcess:
    """Runs a real CLI; on failure shows what it printed."""
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    shown = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{shown}"
    return result


@pytest.fixture(scope="session")
def preprocessed_task(tmp_path_factory):
    """nnU-Net folders holding Dataset990 converted from MSD layout and preprocessed for 3d_fullres and 2d."""
    root = tmp_path_factory.mktemp("nnunet")
    env = nnunet_env(root)
    task = write_msd_task(str(root / "msd"), task_id=DATASET_ID, cases=6, test_cases=2, seed=1, shape=TINY_SHAPE)
    run(["nnUNetv2_convert_MSD_dataset", "-i", task, "-np", "1"], env)
    run(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "2d", "-np", "1", "1",
         "--verify_dataset_integrity"], env)
    return root, env


def python_cmd(*code_lines) -> list:
    return [sys.executable, "-c", "\n".join(code_lines)]


TINY_TRAINERS = ("nnUNetTrainerTiny", "nnUNetTrainerAttentionTiny")  # ungated, gated (ext_trainers/tiny_trainers.py)
TRAINED_FOLDS = (0, 1)


def train(env, trainer, configuration, fold, *extra) -> subprocess.CompletedProcess:
    """nnUNetv2_train on the CPU, augmenting in-process (no worker start-up)."""
    return run(["nnUNetv2_train", str(DATASET_ID), configuration, str(fold), "-tr", trainer, "-device", "cpu",
                *extra], {**env, "nnUNet_n_proc_DA": "0"})


def fold_dir(root: Path, trainer: str, configuration: str, fold) -> Path:
    return root / "nnUNet_results" / DATASET_NAME / f"{trainer}__nnUNetPlans__{configuration}" / f"fold_{fold}"


@pytest.fixture(scope="session")
def trained_models(preprocessed_task):
    """Both tiny trainers trained on folds 0 and 1 of 3d_fullres with --npz, as nnU-Net leaves them."""
    root, env = preprocessed_task
    for trainer in TINY_TRAINERS:
        for fold in TRAINED_FOLDS:
            train(env, trainer, "3d_fullres", fold, "--npz")
    return root, env
