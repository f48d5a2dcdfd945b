"""Hostile and mistaken input: checkpoints that would run code are refused, every bad input is one line with exit
status 2, and no input file changes."""
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from nnunet_attention.nnunet_api import trainers_found_through_ext_folder
import SimpleITK as sitk
import torch
from helpers import CLI, cli_in_process, python_cmd

MARKER_NAME = "pwned"


class _RunsCode:
    """Unpickling this creates the marker file: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mknod, (str(self.marker),))


def write_evil_checkpoint(path: Path, marker: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": {"w": torch.zeros(1)}, "trainer_name": "nnUNetTrainerAttention",
                "init_args": {"configuration": "3d_fullres"}, "logging": {"payload": _RunsCode(marker)}}, path)


def _checksums(folder: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(capsys, *argv) -> tuple:
    return cli_in_process(capsys, *argv)


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """A folder of inputs the commands must never change: a results tree, a bad checkpoint, JSON, images."""
    root = tmp_path / "inputs"
    results = root / "nnUNet_results" / "Dataset991_Hostile"
    for name in ("nnUNet_raw", "nnUNet_preprocessed"):
        (root / name).mkdir(parents=True)
        monkeypatch.setenv(name, str(root / name))
    monkeypatch.setenv("nnUNet_results", str(root / "nnUNet_results"))
    model = results / "nnUNetTrainerAttention__nnUNetPlans__3d_fullres"
    write_evil_checkpoint(model / "fold_0" / "checkpoint_final.pth", tmp_path / MARKER_NAME)
    summary = {"mean": {"1": {"Dice": 0.5}}, "foreground_mean": {"Dice": 0.5},
               "metric_per_case": [{"prediction_file": "a.nii.gz", "reference_file": "a.nii.gz",
                                    "metrics": {"1": {"Dice": 0.5}}}]}
    (model / "fold_0" / "validation").mkdir(parents=True)
    (model / "fold_0" / "validation" / "summary.json").write_text(json.dumps(summary))
    corrupt = results / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_0" / "validation" / "summary.json"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text("{'not': json")
    foreign = results / "nnUNetTrainer__nnUNetPlans__2d" / "fold_0" / "validation" / "summary.json"
    foreign.parent.mkdir(parents=True)
    foreign.write_text(json.dumps({"results": []}))
    text_dice = results / "nnUNetTrainer__nnUNetPlans__3d_lowres" / "fold_0" / "validation" / "summary.json"
    text_dice.parent.mkdir(parents=True)
    text_dice.write_text(json.dumps({**summary, "mean": {"1": {"Dice": "high"}}}))
    other_report = root / "report_other_margins"
    other_report.mkdir()
    (other_report / "report.json").write_text(json.dumps({
        "trainers": ["nnUNetTrainer", "nnUNetTrainerAttention"], "plans": "nnUNetPlans", "folds": [0],
        "margins": {"dice": 0.05, "nsd": 0.01, "hd95": 1.0, "assd": 0.5}}))
    (root / "not_a_report").mkdir()
    (root / "not_a_report" / "report.md").write_text("my notes")
    preprocessed = root / "nnUNet_preprocessed" / "Dataset991_Hostile"
    (preprocessed / "gt_segmentations").mkdir(parents=True)
    (preprocessed / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "lesion": 1},
                                                           "channel_names": {"0": "CT"}, "file_ending": ".nii.gz",
                                                           "numTraining": 1}))
    mask = np.zeros((4, 8, 8), np.uint8)
    mask[1:3, 2:6, 2:6] = 1
    for folder in (preprocessed / "gt_segmentations", model / "fold_0" / "validation"):
        sitk.WriteImage(sitk.GetImageFromArray(mask), str(folder / "a.nii.gz"))
    images = root / "images"
    images.mkdir()
    (images / "case_0000.nii.gz").write_bytes(b"not really an image")
    (root / "notes.pth").write_text("hello")
    (root / "existing_file").write_text("keep me")
    (root / "plans.json").write_text(json.dumps({"configurations": {"3d_fullres": {}}}))
    return root


BAD_INPUTS = {  # name: (argv with {root} for the inputs folder, part of the expected message)
    "synth negative test cases": (["synth", "-o", "{out}", "--test-cases", "-1"], "--test-cases must be 0 or more"),
    "synth one case": (["synth", "-o", "{out}", "--cases", "1"], "--cases must be at least 2"),
    "synth into a file": (["synth", "-o", "{root}/existing_file"], "is an existing file"),
    "bench zero repeats": (["bench", "--repeats", "0"], "--repeats must be at least 1"),
    "bench -c without plans": (["bench", "-c", "2d"], "without -p"),
    "bench unknown configuration": (["bench", "-p", "{root}/plans.json", "-c", "nope"], "nope is not in"),
    "bench missing plans": (["bench", "--plans", "{root}/missing.json"], "plans file not found"),
    "bench json to a folder": (["bench", "--json", "{root}"], "is a folder"),
    "bench ungated trainer": (["bench", "-tr", "nnUNetTrainer"], "not a gated trainer"),
    "bench unknown trainer": (["bench", "-tr", "NoSuchTrainer"], "not found by nnU-Net"),
    "retrofit onto its input": (["retrofit", "-i", "{model}/fold_0/checkpoint_final.pth", "-o",
                                 "{model}/fold_0/checkpoint_final.pth", "--overwrite"], "is the input"),
    "retrofit onto an existing file": (["retrofit", "-i", "{root}/notes.pth", "-o", "{root}/existing_file"],
                                       "exists; pass --overwrite"),
    "retrofit not a checkpoint": (["retrofit", "-i", "{root}/notes.pth", "-o", "{out}.pth"], "not a readable"),
    "retrofit code in checkpoint": (["retrofit", "-i", "{model}/fold_0/checkpoint_final.pth", "-o", "{out}.pth"],
                                    "posix.mknod"),
    "retrofit missing checkpoint": (["retrofit", "-i", "{root}/missing.pth", "-o", "{out}.pth"], "not found"),
    "maps into its input": (["maps", "-i", "{root}/images", "-o", "{root}/images", "-d", "991", "-c", "3d_fullres",
                             "-f", "0"], "inside the input folder"),
    "maps below its input": (["maps", "-i", "{root}/images", "-o", "{root}/images/out", "-d", "991", "-c",
                              "3d_fullres", "-f", "0"], "inside the input folder"),
    "maps into a file": (["maps", "-i", "{root}/images", "-o", "{root}/existing_file", "-d", "991", "-c",
                          "3d_fullres", "-f", "0"], "is an existing file"),
    "maps zero processes": (["maps", "-i", "{root}/images", "-o", "{out}", "-d", "991", "-c", "3d_fullres",
                             "-npp", "0"], "-npp must be at least 1"),
    "maps zero step": (["maps", "-i", "{root}/images", "-o", "{out}", "-d", "991", "-c", "3d_fullres",
                        "-step_size", "0"], "-step_size must be in (0, 1]"),
    "maps into nnUNet_raw": (["maps", "-i", "{root}/images", "-o", "{root}/nnUNet_raw/Dataset991_Hostile/labelsTr",
                              "-d", "991", "-c", "3d_fullres", "-f", "0"], "inside nnUNet_raw"),
    "maps code in checkpoint": (["maps", "-i", "{root}/images", "-o", "{out}", "-d", "991", "-c", "3d_fullres",
                                 "-f", "0", "-device", "cpu"], "posix.mknod"),
    "maps fold not trained": (["maps", "-i", "{root}/images", "-o", "{out}", "-d", "991", "-c", "3d_fullres",
                               "-f", "3", "-device", "cpu"], "fold_3"),
    "maps unknown dataset": (["maps", "-i", "{root}/images", "-o", "{out}", "-d", "555", "-c", "3d_fullres"],
                             "555"),
    "compare unknown trainer": (["compare", "-d", "991", "-c", "3d_fullres", "-tr", "nnUNetTrainer",
                                 "nnUNetTrainerNope", "-f", "0", "-o", "{out}"], "-tr nnUNetTrainerNope: no "),
    "compare a trainer with itself": (["compare", "-d", "991", "-c", "3d_fullres", "-tr", "A", "A"], "twice"),
    "compare corrupt summary": (["compare", "-d", "991", "-c", "3d_fullres", "-tr", "nnUNetTrainer",
                                 "nnUNetTrainerAttention", "-f", "0", "-o", "{out}"],
                                "nnUNetTrainer__nnUNetPlans__3d_fullres/fold_0/validation/summary.json is not "
                                "readable JSON"),
    "compare foreign summary": (["compare", "-d", "991", "-c", "2d", "-tr", "nnUNetTrainer",
                                 "nnUNetTrainerAttention", "-f", "0", "-o", "{out}"],
                                "is not an nnU-Net validation summary"),
    "compare into a file": (["compare", "-d", "991", "-c", "3d_fullres", "-tr", "nnUNetTrainer",
                             "nnUNetTrainerAttention", "-o", "{root}/existing_file"], "is an existing file"),
    "compare unknown dataset": (["compare", "-d", "555", "-c", "3d_fullres", "-tr", "A", "B"], "555"),
    "compare margin of no metric": (["compare", "-d", "991", "-c", "3d_fullres", "-tr", "A", "B", "--margin",
                                     "dce=0.02"], "--margin takes METRIC=VALUE"),
    "compare negative margin": (["compare", "-d", "991", "-c", "3d_fullres", "-tr", "A", "B", "--margin",
                                 "dice=-1"], "positive, finite VALUE"),
    "compare infinite margin": (["compare", "-d", "991", "-c", "3d_fullres", "-tr", "A", "B", "--margin",
                                 "dice=inf"], "positive, finite VALUE"),
    "compare text dice": (["compare", "-d", "991", "-c", "3d_lowres", "-tr", "nnUNetTrainer",
                           "nnUNetTrainerAttention", "-f", "0", "-o", "{out}"], "numeric Dice, got 'high'"),
    "compare over other margins": (["compare", "-d", "991", "-c", "3d_fullres", "-tr", "nnUNetTrainer",
                                    "nnUNetTrainerAttention", "-f", "0", "-o", "{root}/report_other_margins"],
                                   "--margin dice=0.05 repeats it"),
    "compare over files of no report": (["compare", "-d", "991", "-c", "3d_fullres", "-tr", "nnUNetTrainer",
                                         "nnUNetTrainerAttention", "-f", "0", "-o", "{root}/not_a_report"],
                                        "holds report.md but no report.json"),
    "compare into nnUNet_preprocessed": (["compare", "-d", "991", "-c", "3d_fullres", "-tr", "nnUNetTrainer",
                                          "nnUNetTrainerAttention", "-f", "0", "-o",
                                          "{root}/nnUNet_preprocessed/report"], "is inside the input folder"),
    "train --val code in checkpoint": (["train", "991", "3d_fullres", "0", "-tr", "nnUNetTrainerAttention", "--seed",
                                        "0", "-device", "cpu", "--val"], "posix.mknod"),
    "train --c code in checkpoint": (["train", "991", "3d_fullres", "0", "-tr", "nnUNetTrainerAttention", "--seed",
                                      "0", "-device", "cpu", "--c"], "posix.mknod"),
    "train pretrained code in checkpoint": (["train", "991", "3d_fullres", "1", "-tr", "nnUNetTrainerAttention",
                                             "--seed", "0", "-device", "cpu", "-pretrained_weights",
                                             "{model}/fold_0/checkpoint_final.pth"], "posix.mknod"),
    "train pretrained not a checkpoint": (["train", "991", "3d_fullres", "1", "-tr", "nnUNetTrainerAttention",
                                           "--seed", "0", "-device", "cpu", "-pretrained_weights",
                                           "{root}/notes.pth"], "not a readable nnU-Net checkpoint (damaged"),
    "grid validates code in checkpoint": (["grid", "-d", "991", "-c", "3d_fullres", "-f", "0", "-tr", "nnUNetTrainer",
                                           "nnUNetTrainerAttention", "-device", "cpu", "--dry-run"], "posix.mknod"),
    "grid unknown trainer": (["grid", "-d", "991", "-c", "3d_fullres", "-f", "0", "-tr", "nnUNetTrainer",
                              "nnUNetTrainerNope", "-device", "cpu"], "trainer nnUNetTrainerNope not found by nnU-Net"),
    "grid unknown configuration": (["grid", "-d", "991", "-c", "3d_fulres", "-tr", "nnUNetTrainer",
                                    "nnUNetTrainer_5epochs", "-device", "cpu"], "-c 3d_fulres: nnU-Net's planner"),
    "grid fold beyond the splits": (["grid", "-d", "991", "-c", "3d_fullres", "-f", "7", "-tr", "nnUNetTrainer",
                                     "nnUNetTrainer_5epochs", "-device", "cpu", "--dry-run"],
                                    "nnunet-attention splits -d 991 --repeats 2"),
    "grid on slurm without a device": (["grid", "-d", "991", "-tr", "nnUNetTrainer", "nnUNetTrainer_5epochs",
                                        "--executor", "slurm"], "-device: name cpu or cuda"),
    "grid retrains another seed's fold": (["grid", "-d", "991", "-c", "3d_fullres", "-f", "0", "-tr", "nnUNetTrainer",
                                           "nnUNetTrainerAttention", "-device", "cpu", "--seed", "5"],
                                          "pass --retrain-other-seeds"),
    "demo unknown trainer": (["demo", "-o", "{out}", "-tr", "nnUNetTrainer", "nnUNetTrainerNope"],
                             "trainer nnUNetTrainerNope not found by nnU-Net"),
    "demo unknown schedule": (["demo", "-o", "{out}", "--epochs", "7"], "--epochs must be one of"),
    "demo into a file": (["demo", "-o", "{root}/existing_file"], "is an existing file"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case, inputs, tmp_path, capsys):
    argv, expected = BAD_INPUTS[case]
    if argv[0] in ("train", "grid") and "nnUNetTrainerAttention" in argv and not trainers_found_through_ext_folder():
        pytest.skip("nnU-Net before 2.8 finds our trainers only once installed (trainers --install), and a trainer "
                    "is looked up before its checkpoint; tests/test_nnunet_versions.py covers that version's train")
    model = inputs / "nnUNet_results" / "Dataset991_Hostile" / "nnUNetTrainerAttention__nnUNetPlans__3d_fullres"
    argv = [a.format(root=inputs, out=tmp_path / "out", model=model) for a in argv]
    before = _checksums(inputs)
    status, err = _cli(capsys, *argv)
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert expected in lines[0], lines[0]
    assert _checksums(inputs) == before
    assert not (tmp_path / MARKER_NAME).exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.pth").exists()


def test_the_dry_run_names_what_another_seed_would_replace(inputs, capsys):
    if not trainers_found_through_ext_folder():
        pytest.skip("nnU-Net before 2.8 finds our trainers only once installed (trainers --install)")
    from nnunet_attention import cli

    before = _checksums(inputs)
    cli.main(["grid", "-d", "991", "-c", "3d_fullres", "-f", "0", "-tr", "nnUNetTrainer", "nnUNetTrainerAttention",
              "-device", "cpu", "--seed", "5", "--dry-run"])
    out = capsys.readouterr().out
    assert "replaces a finished training unpaired (nnUNetv2_train) (only with --retrain-other-seeds)" in out, out
    assert _checksums(inputs) == before


def test_demo_under_a_bad_nnunet_def_n_proc_is_one_line_before_it_writes(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("nnUNet_def_n_proc", "two")  # nnU-Net would fail on it in every command the demo starts
    status, err = _cli(capsys, "demo", "-o", tmp_path / "out")
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "nnUNet_def_n_proc must be a whole number of processes, got 'two'" in err
    assert not (tmp_path / "out").exists()


def test_compare_reads_no_code_from_checkpoints_and_says_which_it_skipped(inputs, tmp_path, capsys):
    results = inputs / "nnUNet_results" / "Dataset991_Hostile"
    (results / "nnUNetTrainerTiny__nnUNetPlans__3d_fullres").mkdir()  # a trainer of this dataset, no fold yet
    status, err = _cli(capsys, "compare", "-d", "991", "-c", "3d_fullres", "-tr", "nnUNetTrainerTiny",
                       "nnUNetTrainerAttention", "-f", "0", "-o", tmp_path / "report")
    assert status in (0, None), err
    assert "posix.mknod" in err and "checkpoint_final.pth" in err
    assert (tmp_path / "report" / "report.json").is_file()
    assert not (tmp_path / MARKER_NAME).exists()


def test_trust_checkpoint_is_the_only_way_to_load_such_a_file(inputs, tmp_path, capsys):
    model = inputs / "nnUNet_results" / "Dataset991_Hostile" / "nnUNetTrainerAttention__nnUNetPlans__3d_fullres"
    status, _ = _cli(capsys, "retrofit", "-i", model / "fold_0" / "checkpoint_final.pth", "-o", tmp_path / "o.pth",
                     "--trust-checkpoint")
    assert status == 2  # not a usable model either, but it was loaded, and loading ran the code
    assert (tmp_path / MARKER_NAME).exists()


def test_synth_replaces_a_task_only_when_asked_and_then_completely(tmp_path, capsys):
    assert _cli(capsys, "synth", "-o", tmp_path, "--cases", "3", "--test-cases", "1")[0] in (0, None)
    task = next(tmp_path.glob("Task*"))
    assert _cli(capsys, "synth", "-o", tmp_path, "--cases", "2", "--test-cases", "0")[0] == 2
    assert len(list((task / "imagesTr").iterdir())) == 3
    assert _cli(capsys, "synth", "-o", tmp_path, "--cases", "2", "--test-cases", "0", "--overwrite")[0] in (0, None)
    assert len(list((task / "imagesTr").iterdir())) == 2 and not list((task / "imagesTs").iterdir())
    assert json.loads((task / "dataset.json").read_text())["numTraining"] == 2
    assert [p.name for p in tmp_path.iterdir()] == [task.name]  # no staging folder left


def test_a_moved_editable_checkout_costs_one_warning_line_not_a_traceback(tmp_path):
    import subprocess

    pth = Path(__file__).parents[1] / "nnunet_attention_discovery.pth"
    line = pth.read_text().strip().splitlines()[-1]
    # -S: no site-packages, so nnunet_attention cannot be found, as after the checkout moved
    result = subprocess.run([*python_cmd(line)[:1], "-S", "-c", line], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "pip uninstall nnunet-attention" in result.stderr


def test_cli_spot_check_in_a_fresh_process(tmp_path):
    import subprocess

    result = subprocess.run([*CLI, "synth", "-o", str(tmp_path), "--test-cases", "-1"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_ctrl_c_is_one_line_and_exit_130():
    """A real SIGINT into a running command (bench, once it has started its first plan): exit status 130 and one
    line of ours, no traceback."""
    import signal
    import subprocess

    if not trainers_found_through_ext_folder():
        pytest.skip("bench builds our gated trainer, which nnU-Net before 2.8 finds only once installed")
    process = subprocess.Popen([*CLI, "bench", "--repeats", "1", "--measure", "train"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    before = []  # what it wrote before its first step (a library's warning, say), up to the step's line
    while not (before and before[-1].startswith("[1/")) and process.poll() is None:
        before.append(process.stderr.readline())
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert before[-1].startswith("[1/"), "".join(before) + err
    assert process.returncode == 130, err
    ours = [line for line in err.splitlines() if line.startswith("nnunet-attention")]
    assert ours == ["nnunet-attention bench: stopped (Ctrl-C) before it finished; run the same command again to "
                    "finish"] and "Traceback" not in err, err


def test_the_plugin_runs_without_the_study_kit_and_study_commands_name_its_install():
    """With the [study] extra's packages absent (sys.modules[name] = None is how Python blocks an import), gates,
    trainers, discovery, retrofit, maps and bench import and run their CLI; each study command is one line naming
    the install."""
    import subprocess
    import sys

    block = "import sys; sys.modules.update(monai=None, submitit=None); "
    base = ("import nnunet_attention.model.trainers, nnunet_attention.model.discovery, nnunet_attention.tools.maps, "
            "nnunet_attention.tools.retrofit, nnunet_attention.tools.bench, nnunet_attention.model.pairing; "
            "from nnunet_attention import cli; cli.main(['trainers'])")
    done = subprocess.run([sys.executable, "-c", block + base], capture_output=True, text=True)
    assert done.returncode == 0 and "nnUNetTrainerAttention" in done.stdout, done.stderr
    commands = [c.split() for c in ("compare -d 1 -c 2d -tr A B", "grid -d 1", "demo", "synth -o x",
                                    "splits -d 1 --repeats 2")]
    study = ("from nnunet_attention import cli\n"
             f"for argv in {commands!r}:\n"
             "    try:\n        cli.main(argv)\n    except SystemExit as e:\n        print(e.code)\n")
    done = subprocess.run([sys.executable, "-c", block + study], capture_output=True, text=True)
    assert done.stdout.split() == ["2"] * len(commands), done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == len(commands), done.stderr
    assert all('needs monai, submitit: pip install "nnunet-attention[study]"' in line for line in lines), lines
