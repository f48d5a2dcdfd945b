"""The grid's seam to where jobs run (study/backends.py): a third backend written for the tests
(helpers.ThreadBackend: jobs as threads of the test process) runs the tiny grid through the same loop as local and
SLURM; local job records survive a reboot without trusting a PID the system has given to another process."""
import inspect
import json
import os
import shutil

import pytest
from helpers import DATASET_NAME, TINY_TRAINERS, ThreadBackend, fold_dir, nnunet_env, tiny_spec

from nnunet_attention.study import backends, grid
from nnunet_attention.study.backends import BACKENDS, ENDED, RUNNING, ExecutorOptions, LocalBackend


def test_the_grid_loop_names_no_executor():
    source = inspect.getsource(grid)
    assert all(word not in source for word in ('"slurm"', '"local"', "options.kind ==", "squeue", "submitit"))


def test_local_job_records_do_not_trust_a_reused_pid():
    me = {"job_id": str(os.getpid()), "process_start": backends.process_start(os.getpid()),
          "boot_id": backends.boot_id()}
    assert backends.same_process_alive(me)
    assert not backends.same_process_alive({**me, "process_start": str(int(me["process_start"]) + 1)})  # PID reused
    assert not backends.same_process_alive({**me, "boot_id": "an-earlier-boot"})  # after a reboot
    assert not backends.same_process_alive({"job_id": str(os.getpid())})  # a record without the start: not trusted
    states = LocalBackend(ExecutorOptions("local"), "/tmp").states({"a": me, "b": {**me, "boot_id": "x"}})
    assert states == {"a": RUNNING, "b": ENDED}


def test_an_unknown_executor_is_a_one_line_error():
    with pytest.raises(Exception, match="--executor must be one of local, slurm"):
        ExecutorOptions("ray")


def test_a_backend_owns_its_flags_and_they_reach_only_it(monkeypatch):
    from nnunet_attention.cli import build_parser

    monkeypatch.setitem(BACKENDS, "thread", ThreadBackend)
    args = build_parser().parse_args(["grid", "-d", "4", "--executor", "thread", "--thread-nice", "5"])
    options = ExecutorOptions.from_arguments(args)
    assert options.settings == {"thread_nice": 5}
    assert ThreadBackend(options, "/tmp").nice == ["nice", "-n", "5"]
    slurm = build_parser().parse_args(["grid", "-d", "4", "--executor", "slurm", "--slurm-mem", "8G",
                                       "--slurm-setup", "module load cuda"])
    assert ExecutorOptions.from_arguments(slurm).settings == {"slurm_mem": "8G", "slurm_setup": ["module load cuda"]}
    for argv, words in ((["--thread-nice", "5"], "--thread-nice: only with --executor thread"),
                        (["--slurm-mem", "8G"], "--slurm-mem: only with --executor slurm"),
                        (["--executor", "slurm", "--slurm-cpus-per-job", "-1"], "--slurm-cpus-per-job must be 0")):
        with pytest.raises(Exception, match=words):
            ExecutorOptions.from_arguments(build_parser().parse_args(["grid", "-d", "4", *argv]))


@pytest.mark.slow  # validates a fold, runs find_best and compare through nnU-Net's CLIs
def test_a_third_backend_runs_the_tiny_grid(trained_models, tmp_path, monkeypatch):
    source, _ = trained_models
    for folder in ("nnUNet_raw", "nnUNet_preprocessed"):
        shutil.copytree(source / folder, tmp_path / folder)
    for trainer in TINY_TRAINERS:  # the model folders (plans, dataset.json) with fold 0 only
        model = fold_dir(source, trainer, "3d_fullres", 0).parent
        shutil.copytree(model, fold_dir(tmp_path, trainer, "3d_fullres", 0).parent,
                        ignore=shutil.ignore_patterns("fold_1"))
    shutil.rmtree(fold_dir(tmp_path, TINY_TRAINERS[1], "3d_fullres", 0) / "validation")  # the grid validates it
    for name, value in {**nnunet_env(tmp_path), "nnUNet_n_proc_DA": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(BACKENDS, "thread", ThreadBackend)
    lines = []
    assert grid.run_grid(tiny_spec(DATASET_NAME, [0]), ExecutorOptions("thread"), 1, poll_seconds=0.5,
                         log=lines.append, margins=None), "\n".join(lines)
    jobs = json.loads((tmp_path / "nnUNet_results" / grid.GRID_FOLDER / "state.json").read_text())["jobs"]
    assert sorted(jobs) == [f"find_best/{DATASET_NAME}", f"train/{DATASET_NAME}/3d_fullres/fold_0/{TINY_TRAINERS[1]}"]
    assert {job["executor"] for job in jobs.values()} == {"thread"}
    assert jobs[f"train/{DATASET_NAME}/3d_fullres/fold_0/{TINY_TRAINERS[1]}"]["command"].endswith("--val")
    assert (fold_dir(tmp_path, TINY_TRAINERS[1], "3d_fullres", 0) / "validation" / "summary.json").is_file()
    report = tmp_path / "nnUNet_results" / DATASET_NAME / "nnunet_attention_compare" / "report.json"
    assert json.loads(report.read_text())["verdict"]
