"""nnunet-attention compare on a results tree from real (tiny) nnU-Net trainings of two trainers on two folds."""
import csv
import json
import subprocess
import sys

import pytest
from helpers import DATASET_ID, TINY_TRAINERS, TRAINED_FOLDS, fold_dir, run

pytestmark = pytest.mark.slow  # plans, preprocesses or trains through nnU-Net's CLIs
CLI = [sys.executable, "-m", "nnunet_attention.cli"]


def _compare(env, out, folds=TRAINED_FOLDS, trainers=TINY_TRAINERS):
    return subprocess.run([*CLI, "compare", "-d", str(DATASET_ID), "-c", "3d_fullres", "-tr", *trainers,
                           "-f", *map(str, folds), "-o", str(out)], env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def report(trained_models, tmp_path_factory):
    root, env = trained_models
    run(["nnUNetv2_find_best_configuration", str(DATASET_ID), "-c", "3d_fullres", "-tr", *TINY_TRAINERS,
         "-f", *map(str, TRAINED_FOLDS), "-np", "1"], env)
    out = tmp_path_factory.mktemp("compare")
    result = _compare(env, out)
    assert result.returncode == 0, result.stderr
    return root, out, json.loads((out / "report.json").read_text())


def test_report_numbers_are_nnunets_numbers(report):
    root, out, data = report
    entry = data["configurations"]["3d_fullres"]
    assert data["complete"] and entry["labels"] == ["1", "2"]
    for trainer in TINY_TRAINERS:
        for fold in TRAINED_FOLDS:
            summary = json.loads((fold_dir(root, trainer, "3d_fullres", fold) / "validation" / "summary.json")
                                 .read_text())
            for label in ("1", "2"):
                assert entry["trainers"][trainer]["per_fold"][str(fold)][label]["mean"] == pytest.approx(
                    summary["mean"][label]["Dice"], abs=1e-12)
        assert entry["trainers"][trainer]["parameters"] > 0
        assert entry["trainers"][trainer]["epochs"] == 2 and entry["trainers"][trainer]["mean_epoch_seconds"] > 0
    gated, ungated = (entry["trainers"][t]["parameters"] for t in reversed(TINY_TRAINERS))
    assert gated > ungated

    validated = sum(len(json.loads((fold_dir(root, TINY_TRAINERS[0], "3d_fullres", f) / "validation" /
                                    "summary.json").read_text())["metric_per_case"]) for f in TRAINED_FOLDS)
    rows = list(csv.DictReader(open(out / "per_case.csv")))
    assert len(rows) == 2 * validated  # both trainers, each validation case of the two folds
    assert len(entry["paired_cases"]) == validated  # same splits: every case pairs up
    paired = entry["paired"]["1"]
    assert paired["n_pairs"] <= validated and paired["wins"] + paired["ties"] + paired["losses"] == paired["n_pairs"]
    if paired["bootstrap_ci95"]:
        low, high = paired["bootstrap_ci95"]
        assert low <= paired["mean_difference"] <= high


def test_report_has_the_ensemble_and_plots(report):
    _, out, data = report
    ensembles = data["ensembles"]
    assert any(k.startswith("ensemble___") for k in ensembles["foreground_dice"])
    assert ensembles["best"]["models"]
    for name in ("report.md", "dice_3d_fullres.png", "paired_differences_3d_fullres.png"):
        assert (out / name).stat().st_size > 0
    markdown = (out / "report.md").read_text()
    assert "Wilcoxon" in markdown and "Chosen:" in markdown and "Incomplete" not in markdown


def test_missing_fold_is_named_and_the_report_says_incomplete(report, tmp_path):
    root, _, _ = report
    env = {**__import__("os").environ, "nnUNet_results": str(root / "nnUNet_results"),
           "nnUNet_raw": str(root / "nnUNet_raw"), "nnUNet_preprocessed": str(root / "nnUNet_preprocessed")}
    result = _compare(env, tmp_path, folds=(0, 1, 4))
    assert result.returncode == 0
    missing = fold_dir(root, TINY_TRAINERS[0], "3d_fullres", 4) / "validation" / "summary.json"
    assert f"missing: {missing}" in result.stderr
    data = json.loads((tmp_path / "report.json").read_text())
    assert not data["complete"] and str(missing) in data["missing"]
    assert "Incomplete" in (tmp_path / "report.md").read_text()


def test_nothing_to_compare_is_a_one_line_error(report, tmp_path):
    root, _, _ = report
    env = {**__import__("os").environ, "nnUNet_results": str(root / "nnUNet_results"),
           "nnUNet_raw": str(root / "nnUNet_raw"), "nnUNet_preprocessed": str(root / "nnUNet_preprocessed")}
    result = _compare(env, tmp_path, trainers=("nnUNetTrainerNope", "nnUNetTrainerNeither"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "nnUNetTrainerNope__nnUNetPlans__3d_fullres" in result.stderr
    assert "Traceback" not in result.stderr
