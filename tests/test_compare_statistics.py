"""compare's statistics on constructed tables whose answers are known: the verdict's t interval (checked against
scipy's own one-sample t test), the verdict rule, Holm within its families, folds needed, rows seeded by their own
key, the ignore label in NSD/HD95, the calibration of the verdict (a small simulation), and the figures."""
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from nnunet_attention.compare import boundary
from nnunet_attention.compare import analysis, assemble, plots, render
from scipy import stats as scipy_stats

from nnunet_attention.compare.metrics import METRICS, Margins
from nnunet_attention.compare.report import LostClass
from simulation import Cell, CrossValidation, run_cell
from nnunet_attention.compare.statistics import BOOTSTRAP_SAMPLES, folds_needed, row_rng, two_level_bootstrap, verdict


def test_identical_folds_give_the_case_bootstrap():
    cases = np.random.default_rng(1).normal(0.02, 0.05, 40)
    two_level = two_level_bootstrap([cases] * 5, np.random.default_rng(0))
    pooled = np.tile(cases, 5)
    case_level = pooled[np.random.default_rng(0).integers(0, pooled.size, (BOOTSTRAP_SAMPLES, pooled.size))].mean(1)
    for q in (2.5, 50, 97.5):
        assert np.percentile(two_level, q) == pytest.approx(np.percentile(case_level, q), abs=0.0015)


def test_one_case_per_fold_gives_the_fold_bootstrap_exactly():
    folds = [np.array([v]) for v in (0.1, -0.3, 0.25, 0.05, 0.4)]
    two_level = two_level_bootstrap(folds, np.random.default_rng(7))
    values = np.array([f[0] for f in folds])
    fold_level = values[np.random.default_rng(7).integers(0, 5, (BOOTSTRAP_SAMPLES, 5))].mean(1)
    np.testing.assert_allclose(two_level, fold_level)


def test_two_level_interval_is_wider_when_folds_disagree():
    rng = np.random.default_rng(0)
    agreeing = [rng.normal(0.05, 0.05, 20) for _ in range(5)]
    disagreeing = [a + shift for a, shift in zip(agreeing, (-0.3, 0.3, -0.2, 0.25, 0.0))]
    width = [np.ptp(np.percentile(two_level_bootstrap(f, np.random.default_rng(0)), [2.5, 97.5]))
             for f in (agreeing, disagreeing)]
    assert width[1] > 3 * width[0]


def _table(differences_by_fold, dataset="DatasetA", metric="dice", base=0.7):
    """A long-form table as read.py makes it: trainer A at base, B at base + the fold's differences."""
    rows = []
    for fold, differences in enumerate(differences_by_fold):
        for i, d in enumerate(differences):
            for trainer, value in (("A", base), ("B", base + d)):
                rows.append({"dataset": dataset, "configuration": "3d_fullres", "trainer": trainer, "fold": fold,
                             "case": f"c{fold}_{i}", "class": "nodule", "metric": metric, "value": value,
                             "empty": "", "reference_mm3": 100.0 + i})
    return pd.DataFrame(rows)


def _verdict(table, margins=None):
    results = analysis.analyse(table, ["A", "B"], margins=Margins.of(margins))
    folds = sorted(table["fold"].unique())
    return analysis.verdicts(results, {("DatasetA", "3d_fullres"): (folds, folds)})[0]


@pytest.mark.parametrize("shift, sd, expected", [(0.05, 0.02, "better"), (-0.05, 0.02, "worse"),
                                                 (0.0, 0.02, "equivalent"), (0.0, 0.1, "inconclusive")])
def test_verdict_rule_on_constructed_tables(shift, sd, expected):
    rng = np.random.default_rng(3)
    table = _table([rng.normal(shift, sd, 12) for _ in range(5)])
    v = _verdict(table)
    assert v.metrics["dice"].outcome == expected
    assert v.warnings == []  # 5 folds, 60 pairs, no fold missing
    p = v.metrics["dice"].p_b_better
    assert (p > 0.99) if expected == "better" else (p < 0.01) if expected == "worse" else (0.01 < p < 0.99)


def test_identical_trainers_on_three_folds_are_equivalent_and_on_one_fold_inconclusive():
    rng = np.random.default_rng(4)
    three = _table([rng.normal(0.0, 0.001, 12) for _ in range(3)])
    v = _verdict(three).metrics["dice"]
    assert v.outcome == "equivalent" and v.margin == 0.01
    assert v.hierarchical_ci95[0] >= -0.01 and v.hierarchical_ci95[1] <= 0.01
    assert 0 < v.minimal_detectable_difference < 0.01  # (t + t) x the fold SE: small when nothing varies
    one = _table([rng.normal(0.0, 0.001, 36)])
    v = _verdict(one).metrics["dice"]
    assert v.outcome == "inconclusive" and v.minimal_detectable_difference is None
    assert "nothing: fewer than 2 folds" in render.verdict_sentence(v)


def _fold_constant_table(fold_means, cases=6, **kwargs):
    """Every case of a fold differs by the fold's mean: the verdict's interval is then exactly scipy's one-sample t
    interval of the fold means."""
    return _table([np.full(cases, m) for m in fold_means], **kwargs)


def _corrected(means, cases=6):
    """The corrected k-fold t of fold means from one cross-validation whose folds validate `cases` cases each (so
    n_train = (k - 1) x cases): scipy's one-sample t with the variance times 1 + k n_val/n_train, k - 1 df."""
    means = np.asarray(means, dtype=float)
    k = means.size
    factor = 1 + k * cases / ((k - 1) * cases)
    se = scipy_stats.sem(means) * np.sqrt(factor)
    half = scipy_stats.t.ppf(0.975, k - 1) * se
    return [means.mean() - half, means.mean() + half], 2 * scipy_stats.t.sf(abs(means.mean()) / se, k - 1), factor


def test_the_interval_is_the_corrected_t_of_the_fold_means_and_scipys_t_is_the_descriptive_line():
    means = np.array([0.012, -0.004, 0.02, 0.007])
    v = _verdict(_fold_constant_table(means), {"dice": 0.5}).metrics["dice"]
    ci, p, factor = _corrected(means)
    assert factor == pytest.approx(1 + 4 / 3) and v.correction_factor == pytest.approx(factor)
    assert v.validation_to_training == pytest.approx(1 / 3)  # 6 validated, 18 trained on: 24 cases in 4 folds
    assert v.hierarchical_ci95 == pytest.approx(ci, abs=1e-12) and v.t_p == pytest.approx(p)
    oracle = scipy_stats.ttest_1samp(means, 0.0)  # "these trainings": folds as independent, uncorrected
    assert v.trainings_ci95 == pytest.approx(list(oracle.confidence_interval(0.95)), abs=1e-12)
    assert v.trainings_t_p == pytest.approx(oracle.pvalue)
    assert v.df == 3 and v.estimate == pytest.approx(means.mean())
    assert v.design == "one cross-validation, 4 fold(s)" and v.n_repeats == 1 and v.fold_correlation is None
    assert "new cases" in v.estimand


def test_the_five_fold_factor_is_2_25_and_the_sizes_come_from_n_train_when_given():
    means = [0.01, -0.01, 0.005, 0.0, -0.005]
    table = _fold_constant_table(means)
    v = _verdict(table).metrics["dice"]
    assert v.correction_factor == pytest.approx(2.25)
    paired = analysis.pairs(analysis.with_foreground_mean(table), ["A", "B"]).assign(n_train=54)  # a 10-fold split
    s = analysis.analyse_pairs(paired)[("DatasetA", "3d_fullres", "foreground_mean", "dice")]
    assert s.validation_to_training == pytest.approx(6 / 54) and s.correction_factor == pytest.approx(
        1 + 5 * 6 / 54)


def test_repeated_cross_validation_is_one_design_with_a_fold_correlation():
    """Two repeats of 3-fold on the same 12 cases: J = 6 trainings, n_val/n_train = 4/8, factor 1 + 6/2 = 4."""
    rng = np.random.default_rng(8)
    rows = []
    persistent = rng.normal(0, 0.05, 12)
    for repeat in range(2):
        order = rng.permutation(12)
        for fold in range(3):
            for case in order[fold * 4:(fold + 1) * 4]:
                d = 0.01 * fold + persistent[case]
                rows.append({"dataset": "DatasetA", "configuration": "3d_fullres", "class": "foreground_mean",
                             "metric": "dice", "fold": repeat * 3 + fold, "case": f"c{case}", "a": 0.7,
                             "b": 0.7 + d, "difference": d, "reference_mm3": 100.0, "repeat": repeat})
    s = analysis.analyse_pairs(pd.DataFrame(rows))[("DatasetA", "3d_fullres", "foreground_mean", "dice")]
    assert s.n_folds == 6 and s.df == 5 and s.n_repeats == 2 and s.design == "2 × 3-fold"
    assert s.correction_factor == pytest.approx(4.0)
    assert -1 <= s.fold_correlation <= 1


def test_a_margin_decides_equivalence_at_the_intervals_edge():
    means = np.array([0.01, -0.01, 0.005, 0.0, -0.005])
    half = _corrected(means)[0][1]
    table = _fold_constant_table(means)
    inside, outside = (_verdict(table, {"dice": m}).metrics["dice"] for m in (half + 1e-4, half - 1e-4))
    assert inside.outcome == "equivalent" and inside.margin == pytest.approx(half + 1e-4)
    assert outside.outcome == "inconclusive" and outside.margin == pytest.approx(half - 1e-4)
    assert f"±{half + 1e-4:g}" in render.headline_sentence("Dice", inside)


def test_better_and_worse_need_significance_and_a_ci_beyond_the_margin():
    gain = _fold_constant_table([0.03, 0.02, 0.025, 0.035, 0.03])
    assert _verdict(gain).metrics["dice"].outcome == "better"
    negligible = _verdict(gain, {"dice": 0.1}).metrics["dice"]  # significant, but inside ±0.1: does not matter
    assert negligible.outcome == "equivalent" and negligible.excludes_zero is True
    sentence = render.headline_sentence("Dice", negligible)
    assert "different from 0 but within ±0.1" in sentence
    hd95_gain = _fold_constant_table([-2.0, -1.5, -2.5, -1.8, -2.2], metric="hd95")
    results = analysis.analyse(hd95_gain, ["A", "B"])
    assert results[("DatasetA", "3d_fullres", "foreground_mean", "hd95")].outcome == "better"  # lower is better
    # one fold far out: the pooled case mean is positive, the t test on the folds is not significant
    outlier = _fold_constant_table([0.3, -0.01, -0.02, -0.01, -0.02])
    assert _verdict(outlier).metrics["dice"].outcome == "inconclusive"


def test_folds_that_disagree_are_inconclusive_and_need_fewer_folds_as_the_spread_falls():
    rng = np.random.default_rng(2)
    needed = []
    for spread in (0.15, 0.145, 0.14):
        shifts = np.array([1.0, -1.0, 0.5, -0.5, 0.0]) * spread
        v = _verdict(_table([rng.normal(m, 0.01, 12) for m in shifts]), {"dice": 0.2}).metrics["dice"]
        assert v.outcome == "inconclusive"
        assert v.minimal_detectable_difference > v.margin
        needed.append(v.folds_needed.equivalence)
    assert needed[0] > needed[1] > needed[2] > 5, needed
    assert "trainings per trainer to show equivalence" in render.verdict_sentence(v)


def _settled_share(estimate, spread, ratio, k, margin, equivalence, studies=20000, seed=11):
    """Studies of k trainings whose fold differences correlate as the correction assumes (rho = c / (1 + c)) with
    the given spread of s: the share whose scipy t interval at the corrected variance settles it."""
    rng = np.random.default_rng(seed)
    rho = ratio / (1 + ratio)
    sigma = spread / np.sqrt(1 - rho)
    shared = rng.standard_normal((studies, 1)) * np.sqrt(rho)
    folds = estimate + sigma * (shared + rng.standard_normal((studies, k)) * np.sqrt(1 - rho))
    half = scipy_stats.t.ppf(0.975, k - 1) * folds.std(axis=1, ddof=1) * np.sqrt(1 / k + ratio)
    mean = folds.mean(axis=1)
    return float(np.mean(np.abs(mean) + half < margin) if equivalence else np.mean(np.abs(mean) > half))


@pytest.mark.parametrize("estimate, spread, margin, ratio", [
    (0.004, 0.02, 0.02, 0.0), (0.0, 0.01, 0.03, 0.25), (0.02, 0.01, 0.06, 0.25)])
def test_trainings_needed_is_where_four_in_five_such_studies_settle_it(estimate, spread, margin, ratio):
    """At the figure about 80% of simulated studies (fold differences drawn as the correction assumes, intervals by
    scipy) settle it, one training fewer clearly fewer would not do better than 80%; likewise for excluding 0."""
    needed = folds_needed(estimate, spread * np.sqrt(1 / 5 + ratio), 5, margin, ratio)
    for kind, equivalence in (("equivalence", True), ("exclude_zero", False)):
        k = needed[kind]
        if not equivalence and estimate == 0:
            assert k is None
            continue
        assert k is not None and k >= 3
        assert _settled_share(estimate, spread, ratio, k, margin, equivalence) > 0.78
        assert _settled_share(estimate, spread, ratio, k - 1, margin, equivalence) < 0.82
    assert folds_needed(2 * margin, spread, 5, margin)["equivalence"] is None  # beyond the margin: never equivalent
    assert folds_needed(0.0, None, 1, margin) == {"equivalence": None, "exclude_zero": None}


def test_no_number_of_trainings_beats_the_shared_part_of_the_variance():
    """With n_val/n_train = 1/4 the standard error never falls below s / 2: when 1.96 s / 2 exceeds the margin no
    number of trainings shows equivalence, and the sentence says why."""
    margin, ratio = 0.02, 0.25
    assert folds_needed(0.0, 0.05 * np.sqrt(1 / 5 + ratio), 5, margin, ratio)["equivalence"] is None
    v = _verdict(_table([np.full(12, m) for m in (0.05, -0.05, 0.03, -0.03, 0.0)]), {"dice": 0.02})
    sentence = render.verdict_sentence(v.metrics["dice"])
    assert "no number of trainings on this dataset" in sentence and "80% power" in sentence


def test_a_consistent_gain_in_one_fold_only_is_not_a_finding():
    """Large within-fold evidence, but the folds (trainings) disagree: the case bootstrap is fooled, the two-level
    interval is not."""
    rng = np.random.default_rng(0)
    table = _table([rng.normal(m, 0.01, 12) for m in (0.25, -0.02, -0.01, -0.03, 0.0)])
    results = analysis.analyse(table, ["A", "B"])
    s = results[("DatasetA", "3d_fullres", "foreground_mean", "dice")]
    assert s.bootstrap_ci95[0] > 0  # the case-level CI excludes 0...
    assert s.hierarchical_ci95[0] < 0 < s.hierarchical_ci95[1]  # ...the two-level one does not
    assert _verdict(table).metrics["dice"].outcome == "inconclusive"


def test_thin_ground_is_warned():
    table = _table([np.full(4, 0.1)])
    results = analysis.analyse(table, ["A", "B"])
    (v,) = analysis.verdicts(results, {("DatasetA", "3d_fullres"): ([0], [0, 1])})
    text = " ".join(v.warnings)
    assert "training randomness not captured" in text and "fewer than 30" in text and "fold(s) 1" in text
    assert verdict(None, None, None, True, 0.01, 1) == "inconclusive"


def test_adding_a_dataset_changes_no_other_rows_statistics():
    rng = np.random.default_rng(5)
    one = _table([rng.normal(0.02, 0.05, 10) for _ in range(3)])
    other = _table([rng.normal(-0.1, 0.3, 7) for _ in range(4)], dataset="DatasetB")
    alone = analysis.analyse(one, ["A", "B"])
    together = analysis.analyse(pd.concat([other, one]), ["A", "B"])
    for key, stats in alone.items():
        for field in ("bootstrap_ci95", "hierarchical_ci95", "p_b_better", "wilcoxon_p", "t_p", "estimate",
                      "minimal_detectable_difference", "folds_needed"):
            assert getattr(together[key], field) == getattr(stats, field)
    assert row_rng(0, "a", "b").integers(1 << 30) != row_rng(0, "a", "c").integers(1 << 30)


def test_adding_a_dataset_raises_the_headline_holm_p_of_the_others_and_leaves_the_per_class_family_alone():
    """Holm's families: the headline rows (all classes) of a metric across datasets, and the per-class rows. With
    two datasets the smaller headline p is doubled, the larger kept (unless below the doubled one)."""
    a = _fold_constant_table([0.02, 0.01, 0.03])
    b = _fold_constant_table([0.05, 0.04, 0.06, 0.05], dataset="DatasetB")
    p = {d: _corrected(m)[1] for d, m in (("DatasetA", [0.02, 0.01, 0.03]), ("DatasetB", [0.05, 0.04, 0.06, 0.05]))}
    alone = analysis.analyse(a, ["A", "B"])[("DatasetA", "3d_fullres", "foreground_mean", "dice")]
    assert alone.p_holm == pytest.approx(p["DatasetA"])
    together = analysis.analyse(pd.concat([a, b]), ["A", "B"])
    low, high = sorted(p.values())
    expected = {d: 2 * low if v == low else max(2 * low, high) for d, v in p.items()}
    for dataset in p:
        assert together[(dataset, "3d_fullres", "foreground_mean", "dice")].p_holm == pytest.approx(
            expected[dataset])
        per_class = together[(dataset, "3d_fullres", "nodule", "dice")]
        assert per_class.holm_family == "per class" and per_class.p_holm == pytest.approx(expected[dataset])


def test_calibration_at_three_folds_keeps_its_error_rates():
    """A small version of scripts/calibrate_compare.py through the real analysis: no true difference, 3 folds x 4
    cases, 200 studies (seeded): "better"/"worse" at most 7.5% of the time, the 95% CI covering 0 at least 93%."""
    result = run_cell(Cell(folds=3, cases=4, true_difference=0.0, margin=0.05), studies=200, seed=11)
    assert result["better"] + result["worse"] <= 0.075, result
    assert result["coverage"] >= 0.93, result


def test_a_kept_calibration_resumes_and_gives_the_rows_of_a_full_run(tmp_path):
    """run_cells with kept: a run cut short leaves its finished cells there, the re-run runs only the others, and
    the rows equal those of one uninterrupted run; a cell asked with other studies is not taken from the file."""
    import json

    from simulation import run_cells

    cells = [Cell(folds=3, cases=4, true_difference=0.0, margin=0.05),
             Cell(folds=3, cases=4, true_difference=0.05, margin=0.05)]
    kept = tmp_path / "kept.jsonl"
    whole = run_cells(run_cell, cells, 20, 3, 1)
    assert run_cells(run_cell, cells[:1], 20, 3, 1, str(kept)) == whole[:1]
    assert run_cells(run_cell, cells, 20, 3, 1, str(kept)) == whole
    assert len(kept.read_text().splitlines()) == 2  # the first cell was not run twice
    kept.write_text("\n".join(json.dumps({**json.loads(line), "row": {"coverage": -1.0}})
                              for line in kept.read_text().splitlines()) + "\n")
    assert run_cells(run_cell, cells, 20, 3, 1, str(kept))[0] == {"coverage": -1.0}  # taken from the file
    assert run_cells(run_cell, cells, 21, 3, 1, str(kept))[0] != {"coverage": -1.0}  # other studies: run again


def test_calibration_under_correlated_repeated_cross_validation():
    """Cross-validation as it is: two repeats of 5-fold on 40 cases whose trainings correlate by 0.2 through shared
    training cases, training effects dominating, skewed case noise with 2% failures (200 studies, seeded): the
    corrected interval keeps its error rates where today's uncorrected t over 10 "folds" would not."""
    cell = CrossValidation(40, 5, 0.0, 0.02, repeats=2, fold_correlation=0.2, fold_sd=0.03, case_sd=0.01,
                           failure_rate=0.02)
    result = run_cell(cell, studies=200, seed=12)
    assert result["better"] + result["worse"] <= 0.075, result
    assert result["coverage"] >= 0.925, result


def test_failed_trainings_of_b_keep_the_truth_and_at_2_percent_the_coverage():
    """Whole trainings of B that fail (each moving its fold by 0.15-0.45 against B): the simulated differences still
    average the stated truth (10% of folds, 400 studies), and at 2% the corrected interval keeps its coverage (300
    studies, seeded). At 5-10% it does not (docs/compare.md: a study that sees none of the rare failures cannot know
    of them)."""
    rng = np.random.default_rng(3)
    often = CrossValidation(40, 5, 0.0, 0.02, fold_correlation=0.2, fold_failure_rate=0.10, fold_failure_side="b")
    means = [often.pairs(rng)["difference"].mean() for _ in range(400)]
    assert abs(np.mean(means)) < 3 * np.std(means) / np.sqrt(len(means))
    rare = CrossValidation(40, 5, 0.0, 0.02, fold_correlation=0.2, fold_failure_rate=0.02, fold_failure_side="b")
    result = run_cell(rare, studies=300, seed=13)
    assert result["coverage"] >= 0.93 and result["better"] + result["worse"] <= 0.075, result


def test_size_terciles_and_worst_cases():
    table = _table([np.linspace(-0.3, 0.3, 9)])
    results = analysis.analyse(table, ["A", "B"])
    s = results[("DatasetA", "3d_fullres", "nodule", "dice")]
    assert [g["tercile"] for g in s.size_terciles] == ["small", "medium", "large"]
    assert [g["n"] for g in s.size_terciles] == [3, 3, 3]
    assert s.size_terciles[0]["mean_difference"] == pytest.approx(-0.225)  # the three smallest: -0.3..-0.15
    worst = results[("DatasetA", "3d_fullres", "foreground_mean", "dice")].worst_cases
    assert worst[0]["difference"] == pytest.approx(-0.3) and worst[0]["case"] == "c0_0" and len(worst) == 9


def test_ignore_label_counts_for_neither_boundary_metric(tmp_path):
    reference = np.zeros((12, 24, 24), dtype=np.uint8)
    reference[4:8, 6:14, 6:14] = 1
    reference[:, :, 18:] = 3  # the ignore label
    prediction = reference.copy()
    prediction[prediction == 3] = 0
    prediction[2:10, 4:8, 18:22] = 1  # a false positive, but only under the ignore label
    files = {}
    for name, array in (("reference", reference), ("prediction", prediction)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.0, 1.0, 3.0))
        files[name] = str(tmp_path / f"{name}.nii.gz")
        sitk.WriteImage(image, files[name])
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    honoured = boundary.case_metrics(files["prediction"], files["reference"], SimpleITKIO, [1], {"1": 1.0},
                                     ignore_label=3)["1"]
    assert honoured["nsd"] == pytest.approx(1.0) and honoured["hd95"] == pytest.approx(0.0)
    assert honoured["reference_mm3"] == pytest.approx(4 * 8 * 8 * 3.0)
    ignored = boundary.case_metrics(files["prediction"], files["reference"], SimpleITKIO, [1], {"1": 1.0})["1"]
    assert ignored["nsd"] < 1 and ignored["hd95"] > 0  # without it, the false positive counts


def test_figures_are_written_and_curves_of_one_epoch_show_their_points(tmp_path):
    rng = np.random.default_rng(0)
    table = _table([rng.normal(0.02, 0.05, 6) for _ in range(2)])
    paired = analysis.pairs(analysis.with_foreground_mean(table), ["A", "B"])
    results = analysis.analyse(table, ["A", "B"])
    terciles = {(k[2], k[3]): v.size_terciles for k, v in results.items()}
    names = [plots.plot_metrics("p", table, ["nodule"], ["A", "B"], str(tmp_path)),
             plots.plot_paired_differences("p", paired, ["nodule"], ["A", "B"], str(tmp_path)),
             plots.plot_scatter("p", paired, ["nodule"], ["A", "B"], str(tmp_path)),
             plots.plot_size_terciles("p", terciles, ["nodule"], ["A", "B"], str(tmp_path))]
    one_epoch = {t: {"0": {s: [0.5] for s in ("train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice")}}
                 for t in ("A", "B")}
    names.append(plots.plot_curves("p", one_epoch, ["A", "B"], str(tmp_path)))
    assert names == ["metrics_p.png", "paired_differences_p.png", "scatter_p.png", "size_p.png", "curves_p.png"]
    assert all((tmp_path / n).stat().st_size > 5000 for n in names)
    from PIL import Image

    for name in names:  # for a paper: a PDF beside each PNG, 300 dpi, no wider than a journal page
        assert (tmp_path / name).with_suffix(".pdf").read_bytes().startswith(b"%PDF")
        with Image.open(tmp_path / name) as image:
            assert round(image.info["dpi"][0]) == 300 and image.width <= plots.PAGE_WIDTH * 300 + 1, name
    empty = {t: {"0": {s: [] for s in one_epoch["A"]["0"]}} for t in ("A", "B")}
    plots.plot_curves("empty", empty, ["A", "B"], str(tmp_path))
    drawn, blank = (_ink(tmp_path / f"curves_{p}.png") for p in ("p", "empty"))
    assert drawn > blank  # one epoch's points are drawn (lines alone would draw nothing)


@pytest.mark.parametrize("datasets", [1, 10])
def test_forest_plot_labels_lie_inside_the_figure_with_one_and_ten_datasets(tmp_path, datasets):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    rng = np.random.default_rng(0)
    table = pd.concat([_table([rng.normal(0.01 * d, 0.02, 6) for _ in range(3)], dataset=f"Dataset{d:03d}_Liver",
                              metric=metric) for d in range(datasets) for metric in ("dice", "iou", "nsd", "hd95")])
    results = analysis.analyse(table, ["A", "B"])
    rows = [assemble.summary_row(d, "3d_fullres", c, results) for d in sorted(table["dataset"].unique())
            for c in ("nodule", "foreground_mean")]
    fig = plots.forest_figure(rows, ["A", "B"])
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    texts = [t for ax in fig.axes for t in (*ax.get_yticklabels(), ax.xaxis.label) if t.get_text()]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "Liver 3d_fullres nodule (3 folds, 18 cases)" in labels
    assert "Liver 3d_fullres all classes (3 folds, 18 cases)" in labels
    assert len(texts) >= 2 * len(rows) + 3
    for text in texts:
        box = text.get_window_extent(renderer)
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height, text
    for ax in fig.axes[:len(METRICS)]:  # no tick label runs into the next
        boxes = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()),
                       key=lambda b: b.x0)
        assert all(left.x1 <= right.x0 for left, right in zip(boxes, boxes[1:])), ax.xaxis.label.get_text()
    cues = [ax.xaxis.label.get_text().splitlines()[-1] for ax in fig.axes[:4]]
    assert cues == ["← A better    B better →"] * 3 + ["← B better    A better →"]  # HD95: lower is better
    for ax, margin in zip(fig.axes[:4], (0.01, 0.01, 0.01, 1.0)):
        low, high = ax.get_xlim()
        assert low < -margin and high > margin  # the band is on every metric's scale
    assert plots.plot_forest(rows, ["A", "B"], str(tmp_path)) == "forest.png"


def _ink(path) -> int:
    from matplotlib.image import imread

    image = imread(str(path))
    return int((image[..., :3].sum(-1) < 2.5).sum())


def test_the_mean_across_datasets_is_a_t_interval_over_their_estimates_with_paule_mandel_tau_beside_it():
    from nnunet_attention.compare.statistics import mean_across_datasets

    y, v = np.array([0.02, -0.01, 0.05, 0.03]), np.array([1e-4, 4e-4, 2e-4, 1e-4])
    r = mean_across_datasets(y, v)
    oracle = scipy_stats.ttest_1samp(y, 0.0)
    assert r["ci95"] == pytest.approx(list(oracle.confidence_interval(0.95))) and r["p"] == pytest.approx(
        oracle.pvalue) and r["df"] == 3
    tau2 = r["tau"] ** 2
    w = 1 / (v + tau2)
    assert np.sum(w * (y - np.sum(w * y) / w.sum()) ** 2) == pytest.approx(len(y) - 1, abs=1e-6)  # Q(tau^2) = M - 1
    assert r["weighted_estimate"] == pytest.approx(np.sum(w * y) / w.sum())
    q = max(1.0, np.sum(w * (y - r["weighted_estimate"]) ** 2) / 3)  # modified HKSJ: q floored at 1
    half = scipy_stats.t.ppf(0.975, 3) * np.sqrt(q / w.sum())
    assert r["weighted_ci95"] == pytest.approx([r["weighted_estimate"] - half, r["weighted_estimate"] + half])
    spread = scipy_stats.t.ppf(0.975, 2) * np.sqrt(tau2 + r["se"] ** 2)
    assert r["prediction95"] == pytest.approx([r["estimate"] - spread, r["estimate"] + spread])
    assert mean_across_datasets([0.01, 0.011, 0.0105], [1e-4] * 3)["tau"] == 0  # less spread than their own noise
    assert mean_across_datasets([0.01], [1e-4])["ci95"] is None


def test_across_datasets_judges_the_shared_effect_by_the_same_rule():
    rng = np.random.default_rng(9)
    tables = [_table([rng.normal(0.03 + shift, 0.004, 12) for _ in range(5)], dataset=f"Dataset{d}")
              for d, shift in enumerate((0.0, 0.004, -0.003, 0.002))]
    results = analysis.analyse(pd.concat(tables), ["A", "B"])
    across = analysis.across_datasets(results, Margins({"dice": 0.01}))["dice"]
    assert across.n_datasets == 4 and across.outcome == "better" and across.ci95[0] > 0.01
    assert across.prediction95 is None and across.df == 3  # not calibrated with few datasets: not given
    one = analysis.across_datasets(analysis.analyse(tables[0], ["A", "B"]))["dice"]
    assert one.outcome == "inconclusive" and one.n_datasets == 1 and "fewer than 2" in one.note
    first = render.across_datasets_lines({"dice": across})
    assert first[0].startswith("**Across 4 datasets**") and "Dice: better" in first[2]
    row = plots.across_row({"dice": across})[0]
    assert plots.forest_label(row) == "across 4 datasets (mean of datasets)"


def test_configurations_of_one_dataset_are_not_datasets():
    """One dataset compared in two configurations with a clear gain: one dataset, no verdict across datasets; two
    datasets in two configurations each: two datasets, each the mean of its configurations."""
    rng = np.random.default_rng(4)

    def dataset(name, shift):
        return [_table([rng.normal(0.05 + shift, 0.004, 12) for _ in range(5)], dataset=name).assign(
            configuration=c) for c in ("2d", "3d_fullres")]

    one = analysis.across_datasets(analysis.analyse(pd.concat(dataset("DatasetA", 0.0)), ["A", "B"]),
                                   Margins({"dice": 0.01}))["dice"]
    assert one.n_datasets == 1 and one.outcome == "inconclusive" and one.datasets == ["DatasetA"]
    tables = dataset("DatasetA", 0.0) + dataset("DatasetB", 0.01)
    results = analysis.analyse(pd.concat(tables), ["A", "B"])
    two = analysis.across_datasets(results, Margins({"dice": 0.01}))["dice"]
    assert two.n_datasets == 2 and two.df == 1 and two.datasets == ["DatasetA", "DatasetB"]
    means = [np.mean([results[(d, c, "foreground_mean", "dice")].estimate for c in ("2d", "3d_fullres")])
             for d in ("DatasetA", "DatasetB")]
    assert two.estimate == pytest.approx(np.mean(means))
    assert "DatasetA (2d, 3d_fullres)" in two.note


def test_no_verdict_from_fewer_than_three_trainings():
    """Two folds whose differences agree to four decimals give a narrow 1-df interval: still inconclusive."""
    table = _table([np.full(12, -0.003), np.full(12, -0.0031)])
    v = _verdict(table, {"dice": 0.01}).metrics["dice"]
    assert v.hierarchical_ci95[0] > -0.01 and v.hierarchical_ci95[1] < 0.01  # the interval alone would say equivalent
    assert v.outcome == "inconclusive" and v.n_folds == 2
    three = _verdict(_table([np.full(12, -0.003), np.full(12, -0.0031), np.full(12, -0.0029)]), {"dice": 0.01})
    assert three.metrics["dice"].outcome == "equivalent"


def test_each_outcome_names_the_fold_correlation_it_holds_to():
    """The largest rho at which the outcome stands under Var = s^2/J (1 + (J - 1) rho) / (1 - rho): just below it
    the interval at that variance gives the same outcome, just above another; inconclusive holds at any rho."""
    from nnunet_attention.compare.statistics import equicorrelation_factor, interval_at

    rng = np.random.default_rng(3)
    table = _table([rng.normal(0.0, 0.02, 12) + rng.normal(0, 0.004) for _ in range(5)])
    v = _verdict(table, {"dice": 0.05}).metrics["dice"]
    assert v.outcome == "equivalent" and v.assumed_correlation == pytest.approx(0.2)
    rho = v.holds_to_correlation
    assert 0.2 < rho < 1
    naive = v.hierarchical_se ** 2 / v.correction_factor

    def inside(r):
        ci = interval_at(v.estimate, np.sqrt(naive * equicorrelation_factor(5, r)), 4, 0.05)
        return -0.05 <= ci[0] and ci[1] <= 0.05

    assert inside(rho - 1e-3) and not inside(rho + 1e-3)
    wide = _verdict(_table([rng.normal(0.0, 0.2, 12) for _ in range(5)]), {"dice": 0.05}).metrics["dice"]
    assert wide.outcome == "inconclusive" and wide.holds_to_correlation == 1.0
    probabilities = v.correlated_bayes
    assert probabilities["p_equivalent"] > 0.9 and sum(probabilities.values()) == pytest.approx(1.0)


def test_a_class_both_trainers_lost_in_a_fold_stays_out_of_that_folds_headline():
    """Fold 0: both lost class 2 (Dice 0, an exact 0 difference): the headline's fold-0 difference is class 1's
    alone; in the other folds the mean over both classes."""
    rows = []
    for fold in range(3):
        for i in range(4):
            for trainer, shift in (("A", 0.0), ("B", 0.02)):
                for name, value in (("one", 0.8 + shift), ("two", 0.0 if fold == 0 else 0.6 + 2 * shift)):
                    rows.append({"dataset": "DatasetA", "configuration": "3d_fullres", "trainer": trainer,
                                 "fold": fold, "case": f"c{fold}_{i}", "class": name, "metric": "dice",
                                 "value": value, "empty": "", "reference_mm3": 50.0})
    table = pd.DataFrame(rows)
    assert analysis.shared_losses(table, ["A", "B"]) == {("DatasetA", "3d_fullres", "0", "two")}
    headline = analysis.analyse(table, ["A", "B"])[("DatasetA", "3d_fullres", "foreground_mean", "dice")]
    assert headline.per_fold_difference["0"] == pytest.approx(0.02)
    assert headline.per_fold_difference["1"] == pytest.approx(0.03)
    (v,) = analysis.verdicts(analysis.analyse(table, ["A", "B"]), {("DatasetA", "3d_fullres"): ([0, 1, 2], [0, 1, 2])})
    assert any("both lost it in fold(s) 0" in w for w in v.warnings)


def test_a_class_lost_in_every_fold_by_both_trainers_is_named():
    rows = []
    for fold in range(3):
        for i in range(4):
            for trainer in ("A", "B"):
                for name, value in (("hippocampus", 0.8 + 0.01 * i), ("amygdala", 0.0)):
                    rows.append({"dataset": "DatasetA", "configuration": "3d_fullres", "trainer": trainer,
                                 "fold": fold, "case": f"c{fold}_{i}", "class": name, "metric": "dice",
                                 "value": value, "empty": "", "reference_mm3": 50.0})
    table = pd.DataFrame(rows)
    results = analysis.analyse(table, ["A", "B"])
    (v,) = analysis.verdicts(results, {("DatasetA", "3d_fullres"): ([0, 1, 2], [0, 1, 2])})
    assert v.lost_classes == [LostClass("amygdala", ["0", "1", "2"], ["0", "1", "2"], 3)]
    assert any("neither trainer learned it" in w and "amygdala" in w for w in v.warnings)
    assert results[("DatasetA", "3d_fullres", "hippocampus", "dice")].lost_in_folds == {"a": [], "b": []}


def test_printed_ci_ends_round_outwards_so_they_never_seem_to_contradict_the_outcome():
    assert render._ci([-0.00996, 0.01004], 3) == "-0.010 to +0.011"
    assert render._ci([0.002, 0.006], 3) == "+0.002 to +0.006"
    assert render._fmt(0.0041, True, 3) == "+0.004"


def test_repeats_and_training_sizes_come_from_splits_final():
    from nnunet_attention.compare.read import cross_validation_design

    cases = [f"c{i}" for i in range(10)]
    five = [{"train": [c for c in cases if c not in cases[2 * f:2 * f + 2]], "val": cases[2 * f:2 * f + 2]}
            for f in range(5)]
    shuffled = cases[::-1]
    again = [{"train": [c for c in cases if c not in shuffled[2 * f:2 * f + 2]], "val": shuffled[2 * f:2 * f + 2]}
             for f in range(5)]
    design = cross_validation_design(five + again)
    assert [design[str(f)]["repeat"] for f in range(10)] == [0] * 5 + [1] * 5
    assert {d["n_train"] for d in design.values()} == {8}


def test_the_docs_quote_the_calibration_as_measured():
    """Every calibration figure that docs/compare.md and the README quote is the shipped JSON's: compare.md carries
    the summary generated from it, the README's figures (between its calibration markers) appear in that summary."""
    import json
    import re
    from pathlib import Path

    from simulation import summary_text

    root = Path(__file__).parents[1]
    cells = json.loads((root / "docs" / "compare_calibration.json").read_text())["cells"]
    summary = summary_text(cells)
    assert summary in (root / "docs" / "compare.md").read_text()
    readme = (root / "README.md").read_text()
    block = readme.split("<!-- calibration figures -->")[1].split("<!-- end of calibration figures -->")[0]
    quoted = re.findall(r"\d+\.\d%(?:–\d+\.\d%)?", block)
    assert quoted and all(q in summary for q in quoted), quoted
