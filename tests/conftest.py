"""Shared fixtures: a tiny generated MSD task taken through nnU-Net's real conversion, planning and preprocessing."""
import pytest
from helpers import DATASET_ID, TINY_SHAPE, TINY_TRAINERS, TRAINED_FOLDS, nnunet_env, run, train_in_parallel

from nnunet_attention.synth import write_msd_task


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


@pytest.fixture(scope="session")
def trained_models(preprocessed_task):
    """Both tiny trainers trained on folds 0 and 1 of 3d_fullres with --npz, as nnU-Net leaves them."""
    root, env = preprocessed_task
    train_in_parallel(env, [(trainer, "3d_fullres", fold, "--npz") for trainer in TINY_TRAINERS
                            for fold in TRAINED_FOLDS])
    return root, env
