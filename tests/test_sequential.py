"""grid --until-decided on a tiny task through nnU-Net's real CLIs: round by round in nnU-Net's own folds (splits
extended by repeats, nnU-Net's entries untouched), each row judged at its look's level, decisions kept, a second run
retrains nothing; and the spending levels themselves."""
import json

import numpy as np
import pytest
from helpers import CLI, DATASET_ID, DATASET_NAME, private_copy, run

from nnunet_attention.compare.statistics import ALPHA, Look, information_fractions, look_level, spending_levels

TRAINERS = ("nnUNetTrainerTiny", "nnUNetTrainerAttentionTiny")


def test_the_looks_spend_alpha_on_their_joint_normal():
    """The levels, checked against the looks' joint distribution drawn directly (nested means of equicorrelated
    folds: independent increments in information time): the chance that any look crosses is alpha, each look's share
    is the spending function's increment, and one look is the fixed design."""
    from scipy.stats import norm

    assert spending_levels([1.0]) == [pytest.approx(ALPHA)]
    assert information_fractions(3, 5, 0.25) == pytest.approx([0.7037, 0.9048, 1.0], abs=1e-4)
    rng = np.random.default_rng(0)
    designs = [([1 / 3, 2 / 3, 1.0], None), (information_fractions(3, 5, 0.25), None),
               (information_fractions(3, 5, 0.25), [1 / 3, 2 / 3, 1.0]), (information_fractions(2, 5, 0.25), [0.5, 1])]
    for fractions, spend_at in designs:
        levels = spending_levels(fractions, spend_at=spend_at)
        assert levels == sorted(levels)  # O'Brien-Fleming type: the early looks demand the most
        t = np.array(fractions)
        walks = np.cumsum(rng.normal(size=(400_000, t.size)) * np.sqrt(np.diff(t, prepend=0)), axis=1)
        crossed = np.abs(walks / np.sqrt(t)) >= norm.isf(np.array(levels) / 2)
        first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
        spent = 2 - 2 * norm.cdf(norm.isf(ALPHA / 2) / np.sqrt(np.array(spend_at or fractions)))
        assert (first >= 0).mean() == pytest.approx(ALPHA, abs=0.0015)  # Monte Carlo SE 0.00034
        for k in range(t.size):
            assert (first == k).mean() == pytest.approx(spent[k] - (spent[k - 1] if k else 0), abs=0.0015)
    assert spending_levels([1 / 3, 2 / 3, 1.0]) == pytest.approx([0.000687, 0.016096, 0.043879], abs=1e-6)
    assert [look_level(Look(k, 3), 5 * k, 0.25) for k in (1, 2, 3)] == pytest.approx([0.000687, 0.016338, 0.049153],
                                                                                     abs=1e-6)
    assert look_level(Look(2, 3, rows=2), 10, 0.25) == pytest.approx(spending_levels(
        information_fractions(3, 5, 0.25), ALPHA / 2, spend_at=[1 / 3, 2 / 3, 1])[1])


@pytest.mark.slow  # plans and trains 10 tiny trainings through nnU-Net's CLIs
def test_until_decided_stops_after_the_first_round_at_a_clear_difference_and_a_rerun_retrains_nothing(
        preprocessed_task, tmp_path):
    """B's validation is the reference itself (an oracle): better by far in every fold, so the first look, at its
    small spending level, already decides; round 2 (repeat 1, folds 5-9) is never trained and splits_final.json stays
    nnU-Net's own. Identical trainers, by contrast, went on to the maximum (look 2 of 2, inconclusive: a run by hand,
    docs/grid.md)."""
    root, env = private_copy(preprocessed_task[0], tmp_path / "study")
    env = {**env, "nnUNet_n_proc_DA": "0"}
    command = [*CLI, "grid", "-d", str(DATASET_ID), "-c", "2d", "-tr", "nnUNetTrainerTiny", "nnUNetTrainerTinyOracle",
               "-device", "cpu", "--until-decided", "--max-repeats", "2", "--max-parallel", "2", "--poll-seconds", "1",
               "-np", "1"]
    first = run(command, env).stdout
    state = json.loads((root / "nnUNet_results" / "nnunet_attention_grid" / "until_decided.json").read_text())
    report = json.loads((root / "nnUNet_results" / DATASET_NAME / "nnunet_attention_compare_2d" / "report.json"
                         ).read_text())
    dice = report["verdict"][0]["metrics"]["dice"]
    dice_level = look_level(Look(1, 2), 5, dice["validation_to_training"])
    assert state["rows"] == {f"{DATASET_NAME}/2d": {
        "look": 1, "looks": 2, "outcome": "better", "level": pytest.approx(dice_level),
        "trainings_per_trainer": 5,
        "report": str(root / "nnUNet_results" / DATASET_NAME / "nnunet_attention_compare_2d")}}
    assert "better at look 1 of 2 (5 trainings per trainer)" in first
    results = root / "nnUNet_results" / DATASET_NAME
    assert dice["sequential"]["level"] == pytest.approx(dice_level) and dice["sequential"]["rows"] == 1
    assert dice["sequential"]["look"] == 1 and dice["verdict"] == "better" and dice["n_folds"] == 5
    assert "Sequential: look 1 of 2" in (results / "nnunet_attention_compare_2d" / "report.md").read_text()
    assert not list(results.glob("*/fold_5"))  # round 2 never trained
    splits = root / "nnUNet_preprocessed" / DATASET_NAME
    assert len(json.loads((splits / "splits_final.json").read_text())) == 5
    assert not (splits / "splits_final.before_repeats.json").exists()
    assert (results / "inference_information.json").is_file()  # find_best over folds 0-4
    again = run(command, env).stdout
    assert "nnUNetv2_train" not in again and "round" not in again  # decided: nothing trained or judged again
