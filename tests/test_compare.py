"""nnunet-attention compare on results from real (tiny) nnU-Net trainings: two trainers, two datasets (the second
region-based)."""
import csv
import json
import subprocess
import sys

import pytest
from helpers import (DATASET_ID, DATASET_NAME, REGION_DATASET_ID, REGION_DATASET_NAME, TINY_TRAINERS, TRAINED_FOLDS,
                     fold_dir, private_copy)

pytestmark = pytest.mark.slow  # plans, preprocesses or trains through nnU-Net's CLIs
CLI = [sys.executable, "-m", "nnunet_attention.cli"]
SECOND_ID, SECOND_NAME = REGION_DATASET_ID, REGION_DATASET_NAME
LABELS = ["nodule", "cyst"]
REGION_LABELS = ["lesion", "cyst"]


def _compare(env, out, datasets=(DATASET_ID,), folds=TRAINED_FOLDS, trainers=TINY_TRAINERS, *extra):
    return subprocess.run([*CLI, "compare", "-d", *map(str, datasets), "-c", "3d_fullres", "-tr", *trainers,
                           "-f", *map(str, folds), "-o", str(out), *extra], env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def results(trained_models, region_models, tmp_path_factory):
    """Dataset990 (two folds, find_best_configuration run) and the region-based Dataset992 (fold 0 only, no
    find_best), both trainers; a copy (compare caches its boundary metrics next to nnU-Net's validation)."""
    root = tmp_path_factory.mktemp("compare_results")
    private_copy(region_models[0], root, results=True)
    return private_copy(trained_models[0], root, results=True)


@pytest.fixture(scope="module")
def report(results, tmp_path_factory):
    root, env = results
    out = tmp_path_factory.mktemp("compare")
    result = _compare(env, out, datasets=(DATASET_ID, SECOND_ID, 555))
    assert result.returncode == 0, result.stderr
    return root, out, json.loads((out / "report.json").read_text()), result.stderr, result.stdout


def test_two_datasets_in_one_report_with_holm_within_its_families(report):
    root, out, data, stderr, stdout = report
    assert set(data["datasets"]) == {DATASET_NAME, SECOND_NAME}
    assert data["missing_datasets"] and "555" in data["missing_datasets"][0] and "555" in stderr
    rows = data["summary"]
    assert {(r["dataset"], r["class"]) for r in rows} == {
        *((DATASET_NAME, c) for c in LABELS + ["foreground_mean"]),
        *((SECOND_NAME, c) for c in REGION_LABELS + ["foreground_mean"])}
    for metric in ("dice", "nsd", "hd95"):
        for row in rows:
            s = row["metrics"][metric]
            assert "p_holm" in s and "hierarchical_ci95" in s and "p_b_better" in s
            assert s["holm_family"] == ("headline" if row["class"] == "foreground_mean" else "per class")
            if s["t_p"] is not None:
                assert s["t_p"] <= s["p_holm"] <= 1
    assert "MONAI" in data["boundary_metrics"]["implementation"]
    markdown = (out / "report.md").read_text()
    assert markdown.splitlines()[2] == "## Verdict"
    verdicts = {(v["dataset"], v["configuration"]): v for v in data["verdict"]}
    assert set(verdicts) == {(d, "3d_fullres") for d in (DATASET_NAME, SECOND_NAME)}
    for v in verdicts.values():
        assert set(v["metrics"]) == {"dice", "iou", "nsd", "hd95", "assd"}  # IoU and ASSD too, with their verdicts
        assert all(m["verdict"] in ("better", "worse", "equivalent", "inconclusive") for m in v["metrics"].values())
        assert all(m["margin"] > 0 and "folds_needed" in m for m in v["metrics"].values())
        assert any("training randomness not captured" in w for w in v["warnings"])  # 2 folds, then 1
        assert any("fewer than 30" in w for w in v["warnings"])
    # the region-based dataset: its region names, and from one fold never more than inconclusive
    assert data["datasets"][SECOND_NAME]["configurations"]["3d_fullres"]["labels"] == REGION_LABELS
    assert verdicts[(SECOND_NAME, "3d_fullres")]["metrics"]["dice"]["verdict"] == "inconclusive"
    assert "verdict Dataset990_AttentionSynth 3d_fullres" in stdout and "training randomness" in stdout
    assert "Holm" in markdown and "MONAI" in markdown and "nodule" in markdown and "label 1" not in markdown
    assert data["figures"] == ["forest.png"] and (out / "forest.png").stat().st_size > 5000
    assert data["margins"] == {"dice": 0.01, "iou": 0.01, "nsd": 0.01, "hd95": 1.0, "assd": 0.5}
    assert "±0.01" in data["verdict_rule"]
    # Dataset992 has fold 0 only: the missing fold 1 is named, the report says so
    missing = fold_dir(root, TINY_TRAINERS[0], "3d_fullres", 1).parent.parent.parent / SECOND_NAME
    assert not data["complete"] and any(SECOND_NAME in m and "fold_1" in m for m in data["missing"])
    assert str(missing) in " ".join(data["missing"])


def test_dice_numbers_are_nnunets_and_boundary_metrics_are_per_case_and_class(report):
    root, out, data, _, _ = report
    entry = data["datasets"][DATASET_NAME]["configurations"]["3d_fullres"]
    assert entry["labels"] == LABELS and entry["label_keys"] == {"nodule": "1", "cyst": "2"}
    for trainer in TINY_TRAINERS:
        for fold in TRAINED_FOLDS:
            summary = json.loads((fold_dir(root, trainer, "3d_fullres", fold) / "validation" / "summary.json")
                                 .read_text())
            for name, key in entry["label_keys"].items():
                for metric, nnunet_key in (("dice", "Dice"), ("iou", "IoU")):  # IoU: summary.json's, one registry entry
                    assert entry["trainers"][trainer]["per_fold"][str(fold)][name][metric]["mean"] == pytest.approx(
                        summary["mean"][key][nnunet_key], abs=1e-12)
            assert (fold_dir(root, trainer, "3d_fullres", fold) / "validation" /
                    "nnunet_attention_boundary_metrics.json").is_file()
        rows = entry["per_case"][trainer]
        assert rows and all(0 <= r[f"nsd_{c}"] <= 1 and r[f"hd95_{c}"] >= 0 for r in rows for c in LABELS)
        assert entry["trainers"][trainer]["parameters"] > 0 and entry["trainers"][trainer]["epochs"] == 2
    gated, ungated = (entry["trainers"][t]["parameters"] for t in reversed(TINY_TRAINERS))
    assert gated > ungated
    csv_rows = list(csv.DictReader(open(out / "per_case.csv")))
    assert {"dice_nodule", "nsd_nodule", "hd95_nodule", "dice_cyst", "nsd_cyst", "hd95_cyst"} <= set(csv_rows[0])
    validated = sum(len(json.loads((fold_dir(root, TINY_TRAINERS[0], "3d_fullres", f) / "validation" /
                                    "summary.json").read_text())["metric_per_case"]) for f in TRAINED_FOLDS)
    assert len(entry["paired_cases"]) == validated  # same splits: every case pairs up
    for metric in ("dice", "nsd", "hd95"):
        paired = entry["paired"]["nodule"][metric]
        assert paired["wins"] + paired["ties"] + paired["losses"] == paired["n_pairs"]
        assert set(entry["per_fold_difference"]["nodule"][metric]) == {str(f) for f in TRAINED_FOLDS}
    assert 0 < len(entry["worst_cases"]) <= 10 and {"fold", "case", "a", "b"} <= set(entry["worst_cases"][0])


def test_learning_curves_per_trainer_and_fold_and_their_plot(report):
    _, out, data, _, _ = report
    curves = data["curves"][DATASET_NAME]["3d_fullres"]
    for trainer in TINY_TRAINERS:
        assert sorted(curves[trainer]) == [str(f) for f in TRAINED_FOLDS]
        for fold_curves in curves[trainer].values():
            assert all(len(fold_curves[s]) == 2 for s in ("train_losses", "val_losses", "mean_fg_dice",
                                                          "ema_fg_dice"))
    for prefix in (f"{DATASET_NAME}_3d_fullres", f"{SECOND_NAME}_3d_fullres"):
        for kind in ("curves", "metrics", "paired_differences", "scatter", "size"):
            assert (out / f"{kind}_{prefix}.png").stat().st_size > 0


def test_ensemble_gets_boundary_metrics_too(report):
    _, _, data, _, _ = report
    ensembles = data["datasets"][DATASET_NAME]["ensembles"]
    assert ensembles["best"]["models"]
    per_class = ensembles["ensemble_per_class"]
    assert per_class and all(set(v) == set(LABELS) for v in per_class.values())
    assert all(0 <= c["nsd"] <= 1 for v in per_class.values() for c in v.values())
    assert data["datasets"][SECOND_NAME]["ensembles"] is None


def test_second_compare_reads_the_cache(results, report, tmp_path):
    root, env = results
    result = _compare(env, tmp_path, datasets=(DATASET_ID,))
    assert result.returncode == 0 and "boundary metrics" not in result.stderr  # nothing recomputed
    single = json.loads((tmp_path / "report.json").read_text())
    first = report[2]["datasets"][DATASET_NAME]["configurations"]["3d_fullres"]["per_case"]
    assert single["datasets"][DATASET_NAME]["configurations"]["3d_fullres"]["per_case"] == first
    assert single["complete"]


def test_nothing_to_compare_is_a_one_line_error(results, tmp_path):
    _, env = results
    result = _compare(env, tmp_path, trainers=("nnUNetTrainerNope", "nnUNetTrainerNeither"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "nnUNetTrainerNope__nnUNetPlans__3d_fullres" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_misspelt_trainer_beside_a_trained_one_is_refused_before_anything_is_written(results, tmp_path):
    _, env = results
    out = tmp_path / "report"
    result = _compare(env, out, (DATASET_ID,), TRAINED_FOLDS, (TINY_TRAINERS[0], "nnUNetTrainerNope"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "-tr nnUNetTrainerNope" in result.stderr and TINY_TRAINERS[0] in result.stderr  # what was trained there
    assert not out.exists() or not any(out.iterdir())
