"""A fast smoke run of the demo with the tiny trainers: every step through nnU-Net's commands, then a resume."""
import json
import subprocess
import sys

from conftest import TEST_TRAINERS, TINY_SHAPE, TINY_TRAINERS

from nnunet_attention.demo import run_demo


def test_demo_runs_every_step_and_resumes(tmp_path, monkeypatch, capsys):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("nnUNet_extTrainer", str(TEST_TRAINERS))
    monkeypatch.setenv("nnUNet_def_n_proc", "1")
    monkeypatch.setenv("nnUNet_compile", "f")
    workdir = tmp_path / "demo"
    report_dir = run_demo(str(workdir), device="cpu", trainers=list(TINY_TRAINERS), synth_cases=6,
                          synth_shape=TINY_SHAPE)
    first = capsys.readouterr().out
    assert "[1/8] synth" in first and "[8/8] compare" in first and "skipped" not in first

    report = json.loads(open(f"{report_dir}/report.json").read())
    assert report["complete"] and report["trainers"] == list(TINY_TRAINERS)
    assert report["ensembles"]["best"]["models"]
    results = workdir / "nnUNet_results" / "Dataset990_AttentionSynth"
    done = json.loads((results / "nnunet_attention_demo_test_predictions" / "done.json").read_text())
    assert len(list((results / "nnunet_attention_demo_test_predictions" / "postprocessed").glob("*.nii.gz"))) == 4
    assert done["models"]
    assert list((workdir / "logs").glob("*train*.log"))

    run_demo(str(workdir), device="cpu", trainers=list(TINY_TRAINERS))
    second = capsys.readouterr().out
    assert second.count("done before, skipped") == 7 and "Report:" in second


def test_demo_rejects_an_unknown_schedule():
    result = subprocess.run([sys.executable, "-m", "nnunet_attention.cli", "demo", "--epochs", "7"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "--epochs must be one of" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
