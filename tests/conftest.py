"""Shared fixtures: tiny generated MSD tasks taken through nnU-Net's real conversion, planning, preprocessing and
training. Tests read them; a test that writes works on a copy (helpers.private_copy).

Under pytest-xdist (`.ci/run`: `-n 2 --dist loadgroup`) every test that uses one of these fixtures runs on one worker,
so that each is built once; the other worker takes the tests that build their own tasks (demo, gpu_check), and both
share the fast ones."""
import json

import pytest
from helpers import (DATASET_ID, DATASET_NAME, REGION_DATASET_ID, REGION_DATASET_NAME, REGIONS, TINY_SHAPE,
                     TINY_TRAINERS, TRAINED_FOLDS, nnunet_env, run, tiny_spec, train_in_parallel)

from nnunet_attention.synth import write_msd_task

SHARED_TASKS = ("preprocessed_task", "trained_models", "region_models")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    """Groups the tests that share a task; puts the slow tests first (stable), so that under xdist the long
    standalone ones (demo, gpu_check) start at once beside the group and the fast ones fill in at the end."""
    for item in items:
        if any(name in SHARED_TASKS for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("shared_tasks"))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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
    """Both tiny trainers trained on folds 0 and 1 of 3d_fullres with --npz, then nnUNetv2_find_best_configuration
    across them: as nnU-Net leaves a finished cross-validation."""
    root, env = preprocessed_task
    train_in_parallel(env, tiny_spec(DATASET_NAME, TRAINED_FOLDS))
    run(["nnUNetv2_find_best_configuration", str(DATASET_ID), "-c", "3d_fullres", "-tr", *TINY_TRAINERS,
         "-f", *map(str, TRAINED_FOLDS), "-np", "1"], env)
    return root, env


@pytest.fixture(scope="session")
def region_models(tmp_path_factory):
    """Dataset992, region-based (BraTS-style nested regions with regions_class_order): both tiny trainers on fold 0
    of 3d_fullres with --npz; no find_best."""
    root = tmp_path_factory.mktemp("regions")
    env = nnunet_env(root)
    task = write_msd_task(str(root / "msd"), task_id=REGION_DATASET_ID, cases=5, test_cases=1, seed=3,
                          shape=TINY_SHAPE)
    run(["nnUNetv2_convert_MSD_dataset", "-i", task, "-np", "1"], env)
    dataset_json = root / "nnUNet_raw" / REGION_DATASET_NAME / "dataset.json"
    content = json.loads(dataset_json.read_text())
    dataset_json.write_text(json.dumps({**content, "labels": REGIONS, "regions_class_order": [1, 2]}))
    run(["nnUNetv2_plan_and_preprocess", "-d", str(REGION_DATASET_ID), "-c", "3d_fullres", "-np", "1"], env)
    train_in_parallel(env, tiny_spec(REGION_DATASET_NAME, [0]))
    return root, env
