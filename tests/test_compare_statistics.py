"""compare's statistics on constructed tables whose answers are known: the two-level bootstrap, the verdict rule,
rows seeded by their own key, the ignore label in NSD/HD95, and the figures."""
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from nnunet_attention import boundary
from nnunet_attention.compare import analysis, plots, render
from nnunet_attention.statistics import BOOTSTRAP_SAMPLES, folds_needed, row_rng, two_level_bootstrap, verdict


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
    results = analysis.analyse(table, ["A", "B"], margins=margins)
    folds = sorted(table["fold"].unique())
    return analysis.verdicts(results, {("DatasetA", "3d_fullres"): (folds, folds)})[0]


@pytest.mark.parametrize("shift, sd, expected", [(0.05, 0.02, "better"), (-0.05, 0.02, "worse"),
                                                 (0.0, 0.02, "equivalent"), (0.0, 0.1, "inconclusive")])
def test_verdict_rule_on_constructed_tables(shift, sd, expected):
    rng = np.random.default_rng(3)
    table = _table([rng.normal(shift, sd, 12) for _ in range(5)])
    v = _verdict(table)
    assert v["metrics"]["dice"]["verdict"] == expected
    assert v["warnings"] == []  # 5 folds, 60 pairs, no fold missing
    p = v["metrics"]["dice"]["p_b_better"]
    assert (p > 0.99) if expected == "better" else (p < 0.01) if expected == "worse" else (0.01 < p < 0.99)


def test_identical_trainers_on_three_folds_are_equivalent_and_on_one_fold_inconclusive():
    rng = np.random.default_rng(4)
    three = _table([rng.normal(0.0, 0.001, 12) for _ in range(3)])
    v = _verdict(three)["metrics"]["dice"]
    assert v["verdict"] == "equivalent" and v["margin"] == 0.01
    assert v["hierarchical_ci95"][0] >= -0.01 and v["hierarchical_ci95"][1] <= 0.01
    assert 0 < v["minimal_detectable_difference"] < 0.01  # 2.8 x the two-level SE: small when nothing varies
    one = _table([rng.normal(0.0, 0.001, 36)])
    v = _verdict(one)["metrics"]["dice"]
    assert v["verdict"] == "inconclusive" and v["minimal_detectable_difference"] is None
    assert "nothing: fewer than 2 folds" in render.verdict_sentence(v)


def test_a_margin_decides_equivalence_and_is_reported():
    rng = np.random.default_rng(6)
    table = _table([rng.normal(0.01, 0.01, 12) for _ in range(5)])
    strict, loose = (_verdict(table, {"dice": m})["metrics"]["dice"] for m in (0.005, 0.05))
    assert strict["verdict"] in ("better", "inconclusive") and strict["margin"] == 0.005
    assert loose["verdict"] in ("better", "equivalent") and loose["margin"] == 0.05
    wide = _table([rng.normal(0.0, 0.01, 12) + m for m in (0.01, -0.01, 0.005, 0.0, -0.005)])
    assert _verdict(wide, {"dice": 0.05})["metrics"]["dice"]["verdict"] == "equivalent"
    assert _verdict(wide, {"dice": 0.001})["metrics"]["dice"]["verdict"] == "inconclusive"


def test_folds_that_disagree_are_inconclusive_and_need_fewer_folds_as_the_spread_falls():
    rng = np.random.default_rng(2)
    needed = []
    for spread in (0.2, 0.1, 0.05):
        shifts = np.array([1.0, -1.0, 0.5, -0.5, 0.0]) * spread
        v = _verdict(_table([rng.normal(m, 0.01, 12) for m in shifts]))["metrics"]["dice"]
        assert v["verdict"] == "inconclusive"
        assert v["minimal_detectable_difference"] > v["margin"]
        needed.append(v["folds_needed"]["equivalence"])
    assert needed[0] > needed[1] > needed[2] > 5, needed
    assert "folds to show equivalence" in render.verdict_sentence(v)


def test_folds_needed_by_hand():
    # SE 0.02 from 5 folds; observed 0.004 against +-0.01: the CI half-width must fall to 0.006 = 1.96 x SE_target
    assert folds_needed(0.004, 0.02, 5, 0.01) == {"equivalence": int(np.ceil(5 * (0.02 / (0.006 / 1.959964)) ** 2)),
                                                 "exclude_zero": int(np.ceil(5 * (0.02 / (0.004 / 1.959964)) ** 2))}
    assert folds_needed(0.02, 0.02, 5, 0.01)["equivalence"] is None  # beyond the margin: never equivalent
    assert folds_needed(0.0, 0.02, 5, 0.01)["exclude_zero"] is None
    assert folds_needed(0.0, None, 1, 0.01) == {"equivalence": None, "exclude_zero": None}


def test_a_consistent_gain_in_one_fold_only_is_not_a_finding():
    """Large within-fold evidence, but the folds (trainings) disagree: the case bootstrap is fooled, the two-level
    interval is not."""
    rng = np.random.default_rng(0)
    table = _table([rng.normal(m, 0.01, 12) for m in (0.25, -0.02, -0.01, -0.03, 0.0)])
    results = analysis.analyse(table, ["A", "B"])
    s = results[("DatasetA", "3d_fullres", "foreground_mean", "dice")]
    assert s["bootstrap_ci95"][0] > 0  # the case-level CI excludes 0...
    assert s["hierarchical_ci95"][0] < 0 < s["hierarchical_ci95"][1]  # ...the two-level one does not
    assert _verdict(table)["metrics"]["dice"]["verdict"] == "inconclusive"


def test_thin_ground_is_warned():
    table = _table([np.full(4, 0.1)])
    results = analysis.analyse(table, ["A", "B"])
    (v,) = analysis.verdicts(results, {("DatasetA", "3d_fullres"): ([0], [0, 1])})
    text = " ".join(v["warnings"])
    assert "training randomness not captured" in text and "fewer than 30" in text and "fold(s) 1" in text
    assert verdict(None, None, True, 0.01, 1) == "inconclusive"


def test_each_row_is_seeded_by_its_own_key():
    rng = np.random.default_rng(5)
    one = _table([rng.normal(0.02, 0.05, 10) for _ in range(3)])
    other = _table([rng.normal(-0.1, 0.3, 7) for _ in range(4)], dataset="DatasetB")
    alone = analysis.analyse(one, ["A", "B"])
    together = analysis.analyse(pd.concat([other, one]), ["A", "B"])
    for key, stats in alone.items():
        for field in ("bootstrap_ci95", "hierarchical_ci95", "p_b_better", "wilcoxon_p"):
            assert together[key][field] == stats[field]
    assert row_rng(0, "a", "b").integers(1 << 30) != row_rng(0, "a", "c").integers(1 << 30)


def test_size_terciles_and_worst_cases():
    table = _table([np.linspace(-0.3, 0.3, 9)])
    results = analysis.analyse(table, ["A", "B"])
    s = results[("DatasetA", "3d_fullres", "nodule", "dice")]
    assert [g["tercile"] for g in s["size_terciles"]] == ["small", "medium", "large"]
    assert [g["n"] for g in s["size_terciles"]] == [3, 3, 3]
    assert s["size_terciles"][0]["mean_difference"] == pytest.approx(-0.225)  # the three smallest: -0.3..-0.15
    worst = results[("DatasetA", "3d_fullres", "foreground_mean", "dice")]["worst_cases"]
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
    terciles = {(k[2], k[3]): v["size_terciles"] for k, v in results.items()}
    names = [plots.plot_metrics("p", table, ["nodule"], ["A", "B"], str(tmp_path)),
             plots.plot_paired_differences("p", paired, ["nodule"], ["A", "B"], str(tmp_path)),
             plots.plot_scatter("p", paired, ["nodule"], ["A", "B"], str(tmp_path)),
             plots.plot_size_terciles("p", terciles, ["nodule"], ["A", "B"], str(tmp_path))]
    one_epoch = {t: {"0": {s: [0.5] for s in ("train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice")}}
                 for t in ("A", "B")}
    names.append(plots.plot_curves("p", one_epoch, ["A", "B"], str(tmp_path)))
    assert names == ["metrics_p.png", "paired_differences_p.png", "scatter_p.png", "size_p.png", "curves_p.png"]
    assert all((tmp_path / n).stat().st_size > 5000 for n in names)
    empty = {t: {"0": {s: [] for s in one_epoch["A"]["0"]}} for t in ("A", "B")}
    plots.plot_curves("empty", empty, ["A", "B"], str(tmp_path))
    drawn, blank = (_ink(tmp_path / f"curves_{p}.png") for p in ("p", "empty"))
    assert drawn > blank  # one epoch's points are drawn (lines alone would draw nothing)


@pytest.mark.parametrize("datasets", [1, 10])
def test_forest_plot_reads_with_one_and_with_ten_datasets(tmp_path, datasets):
    rng = np.random.default_rng(0)
    table = pd.concat([_table([rng.normal(0.01 * d, 0.02, 6) for _ in range(3)], dataset=f"Dataset{d:03d}",
                              metric=metric) for d in range(datasets) for metric in ("dice", "nsd", "hd95")])
    results = analysis.analyse(table, ["A", "B"])
    rows = [render.summary_row(d, "3d_fullres", c, results) for d in sorted(table["dataset"].unique())
            for c in ("nodule", "foreground_mean")]
    name = plots.plot_forest(rows, ["A", "B"], str(tmp_path))
    from matplotlib.image import imread

    image = imread(str(tmp_path / name))
    assert name == "forest.png" and image.shape[0] > 60 * len(rows) * 0.28  # grows with the rows: labels fit
    assert _ink(tmp_path / name) > 2000


def _ink(path) -> int:
    from matplotlib.image import imread

    image = imread(str(path))
    return int((image[..., :3].sum(-1) < 2.5).sum())
