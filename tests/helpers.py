"""Shared test helpers: nnU-Net environments for a tiny generated task, running real CLIs, where results land."""
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Tuple

import pytest

from nnunet_attention.nnunet_api import model_identifier, nnunet_version, trainers_found_through_ext_folder
from nnunet_attention.study import steps
from nnunet_attention.study.backends import ENDED, RUNNING, BackendFlag, JobBackend
from nnunet_attention.study.executor import LocalExecutor

TESTS = Path(__file__).parent
TEST_TRAINERS = TESTS / "ext_trainers"
DATASET_ID = 990
DATASET_NAME = "Dataset990_AttentionSynth"
# small volumes, anisotropic spacing (about 3 x 1 x 1 mm): planning gives [1, 2, 2] strides
TINY_SHAPE = (16, 48, 48)
TINY_TRAINERS = ("nnUNetTrainerTiny", "nnUNetTrainerAttentionTiny")  # ungated, gated (ext_trainers/tiny_trainers.py)
TRAINED_FOLDS = (0, 1)
# a region-based task (conftest.region_models): "lesion" is nodule or cyst (labels 1 and 2), "cyst" is label 2 inside
# it, nested as BraTS' whole tumour and core
REGION_DATASET_ID, REGION_DATASET_NAME = 992, "Dataset992_AttentionSynth"
REGIONS = {"background": 0, "lesion": [1, 2], "cyst": 2}
CLI = [sys.executable, "-m", "nnunet_attention.cli"]
# inputs small enough for a CPU forward pass through each of nnU-Net's reference plans (tools/reference_plans.py)
SMALL_INPUT = {"hippocampus_3d_fullres": (16, 24, 16), "pancreas_3d_fullres": (8, 64, 64),
               "pancreas_2d": (256, 256), "pancreas_resenc_m_3d_fullres": (8, 64, 64)}
# tests of nnU-Net's lookup through nnUNet_extTrainer, which nnU-Net has from 2.8 on (before it: test_nnunet_versions)
NEEDS_EXT_TRAINER = pytest.mark.skipif(not trainers_found_through_ext_folder(),
                                       reason="nnU-Net before 2.8 does not read nnUNet_extTrainer "
                                              "(test_nnunet_versions.py tests its own trainer folder)")
# the largest reference network: seconds to build and run per test on two cores, so it runs with the slow tests
LARGE_PLANS = ("pancreas_resenc_m_3d_fullres",)


def plan_cases(names=tuple(SMALL_INPUT)) -> list:
    """pytest parameters, one per reference plan name; the large plans marked slow (the fast subset stays an inner
    loop, the suite runs them all)."""
    return [pytest.param(name, marks=[pytest.mark.slow] * (name in LARGE_PLANS)) for name in names]


def nnunet_env(root: Path, **extra) -> dict:
    env = dict(os.environ)
    env.update(nnUNet_raw=str(root / "nnUNet_raw"), nnUNet_preprocessed=str(root / "nnUNet_preprocessed"),
               nnUNet_results=str(root / "nnUNet_results"), nnUNet_extTrainer=str(TEST_TRAINERS),
               nnUNet_def_n_proc="1", nnUNet_compile="f")
    env.update(extra)
    return env


def private_copy(source: Path, destination: Path, results: bool = False) -> Tuple[Path, dict]:
    """A copy of a session fixture's nnU-Net folders (raw and preprocessed; with results, the trained folds too) for a
    test that writes into them, so that no other test sees what it changed; (root, its nnU-Net environment). Copies
    of several fixtures can share one destination (their datasets differ)."""
    for folder in ("nnUNet_raw", "nnUNet_preprocessed", *(["nnUNet_results"] if results else [])):
        shutil.copytree(source / folder, destination / folder, dirs_exist_ok=True)
    return destination, nnunet_env(destination)


def run(command, env, cwd=None) -> subprocess.CompletedProcess:
    """Runs a real CLI; on failure shows what it printed."""
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    shown = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{shown}"
    return result


def python_cmd(*code_lines) -> list:
    return [sys.executable, "-c", "\n".join(code_lines)]


def train(env, trainer, configuration, fold, *extra) -> subprocess.CompletedProcess:
    """nnUNetv2_train on the CPU, augmenting in-process (no worker start-up)."""
    return run(["nnUNetv2_train", str(DATASET_ID), configuration, str(fold), "-tr", trainer, "-device", "cpu",
                *extra], {**env, "nnUNet_n_proc_DA": "0"})


def run_steps(env, to_run, processes: int = 1, logs: Path = None):
    """Steps through the executor grid and the demo use (executor.LocalExecutor), processes at a time; on a failure
    the test fails with the end of the step's log."""
    executor = LocalExecutor(env, str(logs or Path(env["nnUNet_results"]).parent / "logs"), processes)
    failed = executor.run_steps(to_run)
    if failed:
        log = Path(executor.log_file(failed[0]))
        raise AssertionError(f"{' '.join(failed[0].command)} failed:\n"
                             f"{log.read_text()[-4000:] if log.is_file() else '(no log)'}")


def prepare_task(root: Path, task_id: int, configurations, cases: int, test_cases: int, seed: int,
                 edit_raw=None) -> dict:
    """A generated task in root's nnU-Net folders, prepared as the demo and gpu_check prepare theirs
    (steps.prepare_steps: synth, convert, plan with one process); edit_raw(raw dataset folder) runs before planning.
    Returns the environment."""
    env = nnunet_env(root)
    dataset = f"Dataset{task_id:03d}_AttentionSynth"
    spec = steps.StudySpec([dataset], list(configurations), [0], list(TINY_TRAINERS), device="cpu", processes=1)
    prepared = steps.prepare_steps(str(root / "msd" / f"Task{task_id:03d}_AttentionSynth"), spec, steps.Folders.of(env),
                                   {"cases": cases, "test_cases": test_cases, "seed": seed, "shape": TINY_SHAPE})
    run_steps(env, prepared[:-1])
    if edit_raw:
        edit_raw(root / "nnUNet_raw" / dataset)
    run_steps(env, prepared[-1:])
    return env


def train_in_parallel(env, spec: steps.StudySpec, processes: int = 2):
    """The train steps of spec that are not done, as the step model builds them for grid and the demo (nnU-Net's
    commands), two at a time (a tiny training spends most of its time single-threaded: start-up, validation
    export), augmenting in-process."""
    folders = steps.Folders.of(env)
    run_steps({**env, "nnUNet_n_proc_DA": "0"},
              [s for dataset in spec.datasets for s in steps.train_steps(spec, dataset, folders)], processes)


def tiny_spec(dataset: str, folds) -> steps.StudySpec:
    """Both tiny trainers on folds of 3d_fullres with --npz (find_best and compare read the .npz files), one process
    for find_best."""
    return steps.StudySpec([dataset], ["3d_fullres"], list(folds), list(TINY_TRAINERS), device="cpu", npz=True,
                          processes=1)


def fold_dir(root: Path, trainer: str, configuration: str, fold) -> Path:
    return (root / "nnUNet_results" / DATASET_NAME / model_identifier(trainer, "nnUNetPlans", configuration)
            / f"fold_{fold}")


NNUNET_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer", "nnUNet_def_n_proc",
                    "nnUNet_compile")


def cli_in_process(capsys, *argv, monkeypatch=None, env=None) -> tuple:
    """The real CLI entry point, in this process (as the console script calls it), under env's nnU-Net variables:
    (exit status, stderr). Faster than a fresh interpreter for the many one-line error checks. nnU-Net before 2.8
    reads its variables once, at import (nnunetv2.paths): there the CLI runs in a fresh interpreter instead, which
    reads them as a user's command does."""
    from nnunet_attention import cli

    if env is not None:
        for name in NNUNET_VARIABLES:
            if name in env:
                monkeypatch.setenv(name, env[name])
    if nnunet_version() < (2, 8):
        done = subprocess.run([*CLI, *map(str, argv)], capture_output=True, text=True)
        print(done.stdout, end="")
        return done.returncode, done.stderr
    try:
        cli.main([str(a) for a in argv])
        status = 0
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err


class ThreadBackend(JobBackend):
    """Jobs as threads of this process, each running its command (a test-only executor)."""

    name = "thread"
    flags = (BackendFlag("--thread-nice", {"type": int, "help": "niceness of each job's command"}),)

    def __init__(self, options, logs):
        super().__init__(options, logs)
        self.threads = {}
        self.nice = ["nice", "-n", str(options.settings["thread_nice"])] if "thread_nice" in options.settings else []

    def default_parallel(self) -> int:
        return 2

    def submit(self, key, command, variables, busy_gpus):
        os.makedirs(self.logs, exist_ok=True)
        log = os.path.join(self.logs, key.replace("/", "_") + ".log")

        def job():
            with open(log, "w") as f:
                subprocess.run([*self.nice, *command], env={**os.environ, **variables}, stdout=f,
                               stderr=subprocess.STDOUT)

        self.threads[key] = threading.Thread(target=job)
        self.threads[key].start()
        return {"job_id": f"thread-{len(self.threads)}", "log": log, "gpu": None}

    def states(self, records):
        return {k: RUNNING if k in self.threads and self.threads[k].is_alive() else ENDED for k in records}
