"""grid --until-decided on a tiny task through nnU-Net's real CLIs: round by round in nnU-Net's own folds (splits
extended by repeats, nnU-Net's entries untouched), each row judged at its look's level, decisions kept, a second run
retrains nothing; and the spending levels themselves."""
import json

import pytest
from helpers import CLI, DATASET_ID, DATASET_NAME, private_copy, run

from nnunet_attention.compare.statistics import ALPHA, spending_levels

TRAINERS = ("nnUNetTrainerTiny", "nnUNetTrainerAttentionTiny")


def test_spending_levels_sum_to_alpha_and_spend_little_early():
    for looks in (1, 2, 3, 5):
        levels = spending_levels(looks)
        assert sum(levels) == pytest.approx(ALPHA) and len(levels) == looks
        assert levels == sorted(levels)  # O'Brien-Fleming type: the early looks demand the most
    assert spending_levels(1) == [pytest.approx(ALPHA)] and spending_levels(3)[0] < 0.001


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
    assert state["rows"] == {f"{DATASET_NAME}/2d": {
        "look": 1, "looks": 2, "outcome": "better", "level": pytest.approx(spending_levels(2)[0]),
        "trainings_per_trainer": 5,
        "report": str(root / "nnUNet_results" / DATASET_NAME / "nnunet_attention_compare_2d")}}
    assert "better at look 1 of 2 (5 trainings per trainer)" in first
    results = root / "nnUNet_results" / DATASET_NAME
    report = json.loads((results / "nnunet_attention_compare_2d" / "report.json").read_text())
    dice = report["verdict"][0]["metrics"]["dice"]
    assert dice["sequential"]["look"] == 1 and dice["verdict"] == "better" and dice["n_folds"] == 5
    assert "Sequential: look 1 of 2" in (results / "nnunet_attention_compare_2d" / "report.md").read_text()
    assert not list(results.glob("*/fold_5"))  # round 2 never trained
    splits = root / "nnUNet_preprocessed" / DATASET_NAME
    assert len(json.loads((splits / "splits_final.json").read_text())) == 5
    assert not (splits / "splits_final.before_repeats.json").exists()
    assert (results / "inference_information.json").is_file()  # find_best over folds 0-4
    again = run(command, env).stdout
    assert "nnUNetv2_train" not in again and "round" not in again  # decided: nothing trained or judged again
