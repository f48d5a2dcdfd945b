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


@pytest.mark.slow  # plans and trains 20 tiny trainings through nnU-Net's CLIs
def test_until_decided_trains_round_by_round_and_a_rerun_retrains_nothing(preprocessed_task, tmp_path):
    root, env = private_copy(preprocessed_task[0], tmp_path / "study")
    env = {**env, "nnUNet_n_proc_DA": "0"}
    command = [*CLI, "grid", "-d", str(DATASET_ID), "-c", "2d", "-tr", *TRAINERS, "-device", "cpu",
               "--until-decided", "--max-repeats", "2", "--max-parallel", "2", "--poll-seconds", "1", "-np", "1"]
    first = run(command, env).stdout
    state = json.loads((root / "nnUNet_results" / "nnunet_attention_grid" / "until_decided.json").read_text())
    (row,) = state["rows"].values()
    assert row["look"] in (1, 2) and row["looks"] == 2 and row["level"] == pytest.approx(
        spending_levels(2)[row["look"] - 1])
    assert f"{row['outcome']} at look {row['look']} of 2" in first
    report = json.loads((root / "nnUNet_results" / DATASET_NAME / "nnunet_attention_compare_2d" / "report.json")
                        .read_text())
    dice = report["verdict"][0]["metrics"]["dice"]
    assert dice["sequential"]["look"] == row["look"] and dice["verdict"] == row["outcome"]
    splits = root / "nnUNet_preprocessed" / DATASET_NAME
    if row["look"] == 2:  # the second round ran in repeat 1's folds 5-9; nnU-Net's folds 0-4 stayed as they were
        extended = json.loads((splits / "splits_final.json").read_text())
        assert len(extended) == 10
        assert extended[:5] == json.loads((splits / "splits_final.before_repeats.json").read_text())
        assert dice["n_folds"] == 10
    assert (root / "nnUNet_results" / DATASET_NAME / "inference_information.json").is_file()  # folds 0-4
    again = run(command, env).stdout
    assert "nnUNetv2_train" not in again and "round" not in again  # decided: nothing trained or judged again
