"""Shared fixtures: tiny generated MSD tasks taken through nnU-Net's real conversion, planning, preprocessing and
training. Tests read them; a test that writes works on a copy (helpers.private_copy).

Under pytest-xdist (`.ci/run`: `-n 2 --dist loadgroup`) every test that uses one of these fixtures runs on one worker,
so that each is built once; the other worker takes the tests that build their own tasks (demo, gpu_check), and both
share the fast ones."""
import json
import os
import sys
from pathlib import Path

import pytest
from helpers import (DATASET_ID, DATASET_NAME, REGION_DATASET_ID, REGION_DATASET_NAME, REGIONS, TINY_TRAINERS,
                     TRAINED_FOLDS, prepare_task, run, run_steps, tiny_spec, train_in_parallel)

from nnunet_attention.study import steps

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))  # the study tools (simulation.py) the tests drive
SHARED_TASKS = ("preprocessed_task", "trained_models", "gated_predictions", "region_models")


def pytest_configure(config):
    """Under pytest-xdist the N workers share the cores: each gets cores // N torch threads, and so do the processes
    its tests start (OMP_NUM_THREADS) unless they set their own, as nnU-Net's commands do. Two workers of two
    threads each on two cores spend a third of their CPU contending (test_compile_amp's autocast test, both at once:
    74 s each with two threads, 50 s with one)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


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
    return root, prepare_task(root, DATASET_ID, ["3d_fullres", "2d"], cases=6, test_cases=2, seed=1)


@pytest.fixture(scope="session")
def trained_models(preprocessed_task):
    """Both tiny trainers trained on folds 0 and 1 of 3d_fullres with --npz, then nnUNetv2_find_best_configuration
    across them: as nnU-Net leaves a finished cross-validation."""
    root, env = preprocessed_task
    spec = tiny_spec(DATASET_NAME, TRAINED_FOLDS)
    train_in_parallel(env, spec)
    run_steps(env, [steps.find_best_step(spec, DATASET_NAME, steps.Folders.of(env), [])])
    return root, env


@pytest.fixture(scope="session")
def gated_predictions(trained_models, tmp_path_factory):
    """nnUNetv2_predict of the gated tiny trainer's two folds on the test images as the demo predicts on the CPU
    (steps.CPU_PREDICTION: no mirroring, as maps is run against it): (test images folder, predictions folder)."""
    root, env = trained_models
    images = root / "nnUNet_raw" / DATASET_NAME / "imagesTs"
    out = tmp_path_factory.mktemp("gated_predictions")
    run(["nnUNetv2_predict", "-i", str(images), "-o", str(out), "-d", str(DATASET_ID), "-c", "3d_fullres", "-tr",
         TINY_TRAINERS[1], "-f", *map(str, TRAINED_FOLDS), "-device", "cpu", *steps.CPU_PREDICTION], env)
    return images, out


@pytest.fixture(scope="session")
def region_models(tmp_path_factory):
    """Dataset992, region-based (BraTS-style nested regions with regions_class_order): both tiny trainers on fold 0
    of 3d_fullres with --npz; no find_best."""
    root = tmp_path_factory.mktemp("regions")

    def nested_regions(raw):
        dataset_json = raw / "dataset.json"
        content = json.loads(dataset_json.read_text())
        dataset_json.write_text(json.dumps({**content, "labels": REGIONS, "regions_class_order": [1, 2]}))

    env = prepare_task(root, REGION_DATASET_ID, ["3d_fullres"], cases=5, test_cases=1, seed=3,
                       edit_raw=nested_regions)
    train_in_parallel(env, tiny_spec(REGION_DATASET_NAME, [0]))
    return root, env
