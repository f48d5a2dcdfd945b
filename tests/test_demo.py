"""The demo with tiny trainers: every step through nnU-Net's commands; killed mid-training, it resumes."""
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import TEST_TRAINERS, TINY_SHAPE, python_cmd

from nnunet_attention.nnunet_api import model_identifier
from nnunet_attention.study.demo import run_demo


TRAINERS = ["nnUNetTrainerTiny", "nnUNetTrainerAttentionTinyResumable"]
SETTINGS = {"configuration": "3d_fullres", "folds": (0,)}  # one fold keeps the test short (the demo's default: 5)


def _trainings_of(results) -> list:
    """The command lines of live processes whose nnUNet_results is results (nnU-Net's trainings and their workers)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if f"nnUNet_results={results}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.slow  # plans, preprocesses and trains through nnU-Net's CLIs
def test_demo_runs_every_step_stops_its_trainings_on_sigterm_and_resumes(tmp_path, monkeypatch, capsys):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, "")  # unset for the demo (it then uses its work folder); restored afterwards
    monkeypatch.setenv("nnUNet_extTrainer", str(TEST_TRAINERS))
    monkeypatch.setenv("nnUNet_def_n_proc", "1")
    monkeypatch.setenv("nnUNet_compile", "f")
    workdir = tmp_path / "demo"
    gated_fold = (workdir / "nnUNet_results" / "Dataset990_AttentionSynth" /
                  model_identifier(TRAINERS[1], "nnUNetPlans", "3d_fullres") / "fold_0")
    first = subprocess.Popen(python_cmd("from nnunet_attention.cli import exit_on_sigterm",
                                        "from nnunet_attention.study.demo import run_demo", "exit_on_sigterm()",
                                        f"run_demo({str(workdir)!r}, device='cpu', trainers={TRAINERS!r}, "
                                        f"configuration='3d_fullres', folds=(0,), synth_cases=6, "
                                        f"synth_shape={TINY_SHAPE!r})"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 900
    while time.time() < deadline and not any("Epoch 2" in log.read_text()
                                             for log in gated_fold.glob("training_log_*.txt")):
        assert first.poll() is None, "the demo ended before it could be killed"
        time.sleep(0.2)
    assert _trainings_of(workdir / "nnUNet_results")
    first.send_signal(signal.SIGTERM)  # the demo only, as kill or a scheduler would
    assert first.wait(timeout=60) == 128 + signal.SIGTERM
    assert _trainings_of(workdir / "nnUNet_results") == []  # it stopped the trainings it had started
    assert (gated_fold / "checkpoint_latest.pth").is_file()

    report_dir = run_demo(str(workdir), device="cpu", trainers=TRAINERS, synth_cases=6, synth_shape=TINY_SHAPE,
                          **SETTINGS)
    resumed = capsys.readouterr().out
    assert f"[5/8] train {TRAINERS[1]} fold 0 (resuming)" in resumed and "--c" in resumed
    assert resumed.count("done before, skipped") == 4  # synth, convert, plan, the finished ungated training
    assert "Paired trainings: seed 0" in resumed and "nnunet-attention train 990 3d_fullres 0" in resumed
    # SIGTERM then --c: the gated training continued from its saved epoch (nnU-Net's log), it did not restart
    first_log, second_log = sorted(gated_fold.glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime)
    epochs = [[int(e) for e in re.findall(r": Epoch (\d+)\s*$", log.read_text(), re.MULTILINE)]
              for log in (first_log, second_log)]
    assert epochs[0][0] == 0 and epochs[1][0] >= 2 and epochs[1][-1] == 3
    assert (gated_fold / "checkpoint_final.pth").is_file() and not (gated_fold / "checkpoint_latest.pth").exists()
    # the resumed model was validated (find_best ranked it) and the chosen model predicted the test set below
    assert (gated_fold / "validation" / "summary.json").is_file()
    report = json.loads(open(f"{report_dir}/report.json").read())
    assert report["complete"] and report["trainers"] == TRAINERS
    assert "not part of the calibration" in report["note"]  # tiny trainers on a tiny task: no measured spread to show
    (verdict,) = report["verdict"]
    assert any("training randomness not captured" in w for w in verdict["warnings"])
    assert "verdict Dataset990_AttentionSynth 3d_fullres" in resumed
    assert report["datasets"]["Dataset990_AttentionSynth"]["ensembles"]["best"]["models"]
    results = workdir / "nnUNet_results" / "Dataset990_AttentionSynth"
    done = json.loads((results / "nnunet_attention_demo_test_predictions" / "done.json").read_text())
    assert len(list((results / "nnunet_attention_demo_test_predictions" / "postprocessed").glob("*.nii.gz"))) == 4
    assert done["models"]
    assert list((workdir / "logs").glob("*train*.log"))

    run_demo(str(workdir), device="cpu", trainers=TRAINERS, synth_cases=6, synth_shape=TINY_SHAPE, **SETTINGS)
    again = capsys.readouterr().out
    assert again.count("done before, skipped") == 7 and "Report:" in again



def test_the_time_estimate_comes_from_the_first_epoch_and_the_steps_left(tmp_path, capsys):
    from nnunet_attention.study.demo import Runner, schedule_epochs, shorter_hint

    runner = Runner(str(tmp_path), 10, {})
    runner.shorter = shorter_hint([0, 1, 2], 100, "3d_fullres")
    from nnunet_attention.model.trainers import nnUNetTrainerDemo

    assert schedule_epochs("nnUNetTrainerAttentionDemo") == nnUNetTrainerDemo.schedule[0]
    assert schedule_epochs("nnUNetTrainerAttention_100epochs") == 100
    runner.epochs = 8
    assert schedule_epochs("nnUNetTrainer") == 1000 and schedule_epochs("MyOwnTrainer") is None
    runner._trainings_left = (6, 2)
    runner._estimate("2026-12-02 10:00:00: Epoch 0\n")  # no epoch time yet: nothing
    assert capsys.readouterr().out == "" and runner._trainings_left == (6, 2)
    runner._estimate("2026-12-02 10:00:30: Epoch time: 30.0 s\n")
    assert runner._trainings_left is None  # once
    out = capsys.readouterr().out
    assert "about 12 min from now: 6 trainings of 8 epochs at 30 s per epoch, 2 at a time" in out
    assert "Shorter: fewer folds (-f 0 1), a shorter schedule (--epochs 50), a smaller configuration (-c 2d)." in out
    runner._first = (6, 2, time.time() - 100)  # the first training ended after 100 s: 3 rounds of 100 s, 200 s left
    runner._refine(100.0)
    expected = time.strftime("%H:%M", time.localtime(time.time() + 200))
    assert f"estimate from the first whole training (100 s): the trainings end around {expected}" in \
        capsys.readouterr().out
    runner._refine(100.0)  # once
    assert capsys.readouterr().out == ""


def test_epochs_picks_each_trainers_schedule_version_and_a_trainer_without_one_is_one_line():
    from nnunet_attention.errors import NnUNetAttentionError
    from nnunet_attention.study.demo import DEMO_TRAINERS, matched_trainers, schedule_epochs

    assert matched_trainers(None, "cpu") == list(DEMO_TRAINERS)
    assert matched_trainers(None, "cuda") == ["nnUNetTrainer_100epochs", "nnUNetTrainerAttention_100epochs"]
    pair = matched_trainers(50, "cpu", ["nnUNetTrainer", "nnUNetTrainerAttentionAllSkips"])
    assert pair == ["nnUNetTrainer_50epochs", "nnUNetTrainerAttentionAllSkips_50epochs"]
    assert schedule_epochs(pair[1]) == 50
    assert matched_trainers(None, "cpu", ["A", "B"]) == ["A", "B"]  # without --epochs the pair is as given
    for trainers, epochs, words in ((["nnUNetTrainer", "MyOwnTrainer"], 50, "MyOwnTrainer has no schedule versions"),
                                    (None, 7, "--epochs must be one of nnU-Net's schedules")):
        with pytest.raises(NnUNetAttentionError, match=words):
            matched_trainers(epochs, "cpu", trainers)


def test_the_shorter_hint_leaves_out_what_is_in_effect():
    from nnunet_attention.study.demo import shorter_hint

    assert shorter_hint([0, 1], 5, "2d") == ""  # the demo's own short schedule, two folds, 2d: nothing left
    assert shorter_hint([0, 1, 2, 3, 4], 5, "2d") == " Shorter: fewer folds (-f 0 1)."
    assert shorter_hint([0], 20, "3d_fullres") == " Shorter: a shorter schedule (--epochs 10), a smaller " \
                                                  "configuration (-c 2d)."


def test_a_demo_stopped_by_sigterm_says_so_in_one_line_with_the_command_that_resumes(tmp_path):
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    command = [sys.executable, "-m", "nnunet_attention.cli", "demo", "-o", str(tmp_path / "demo"), "-f", "0", "1"]
    demo = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    for line in demo.stdout:
        if line.startswith("nnU-Net folders"):
            break
    demo.send_signal(signal.SIGTERM)
    _, stderr = demo.communicate(timeout=120)
    assert demo.returncode == 128 + signal.SIGTERM
    last = stderr.strip().splitlines()[-1]
    assert last == f"nnunet-attention demo: stopped; its finished steps and trainings in {tmp_path / 'demo'} are " \
                   f"kept; resume with: nnunet-attention demo -o {tmp_path / 'demo'} -f 0 1", stderr[-2000:]
