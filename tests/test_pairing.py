"""Paired trainings (nnunet-attention train --seed): both trainers of a fold see identical batches and start their
shared weights equal; a seeded training repeats exactly; without the seed nothing is paired (nnU-Net's behaviour)."""
import json

import pytest
import torch
from helpers import CLI, DATASET_ID, cli_in_process, fold_dir, private_copy, run

from nnunet_attention.model.pairing import pair_seed

UNGATED, GATED = "nnUNetTrainerTinyRecording", "nnUNetTrainerAttentionTinyRecording"


def _paired(env, trainer, seed, *extra):
    return run([*CLI, "train", str(DATASET_ID), "2d", "0", "-tr", trainer, "--seed", str(seed), "-device", "cpu",
                *extra], {**env, "nnUNet_n_proc_DA": "2"})  # two augmentation workers: the ordered multi-worker path


def _recorded(root, trainer) -> dict:
    return json.loads((fold_dir(root, trainer, "2d", 0) / "recorded.json").read_text())


def _weights(root, trainer) -> dict:
    return torch.load(fold_dir(root, trainer, "2d", 0) / "checkpoint_final.pth", map_location="cpu",
                      weights_only=False)["network_weights"]


@pytest.mark.slow
def test_paired_trainers_see_the_same_batches_and_start_equal_and_unpaired_ones_do_not(preprocessed_task, tmp_path):
    root, env = private_copy(preprocessed_task[0], tmp_path)
    for trainer in (UNGATED, GATED):
        _paired(env, trainer, 5)
    ungated, gated = _recorded(root, UNGATED), _recorded(root, GATED)
    assert len(ungated["batches"]) == 6 and gated["batches"] == ungated["batches"]  # data and targets, in order
    assert set(ungated["start"]) < set(gated["start"])  # the gates are extra
    assert all(gated["start"][k] == v for k, v in ungated["start"].items())  # every shared tensor starts equal
    log = next(fold_dir(root, GATED, "2d", 0).glob("training_log_*.txt")).read_text()
    assert f"pair seed {pair_seed(5, 'Dataset990_AttentionSynth', '2d', 0)}" in log and "2 augmentation workers" in log

    other, other_env = private_copy(preprocessed_task[0], tmp_path / "unpaired")
    for trainer in (UNGATED, GATED):  # nnU-Net's own command: each training its own randomness
        run(["nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", trainer, "-device", "cpu"],
            {**other_env, "nnUNet_n_proc_DA": "2"})
    assert _recorded(other, GATED)["batches"] != _recorded(other, UNGATED)["batches"]
    assert not (fold_dir(other, GATED, "2d", 0).glob("training_log_*.txt").__next__().read_text().count("Paired"))


@pytest.mark.slow
def test_a_seeded_training_repeats_exactly_and_another_seed_does_not(preprocessed_task, tmp_path):
    runs = []
    for name, seed in (("first", 8), ("second", 8), ("other", 9)):
        root, env = private_copy(preprocessed_task[0], tmp_path / name)
        _paired(env, GATED, seed, "--npz")
        summary = json.loads((fold_dir(root, GATED, "2d", 0) / "validation" / "summary.json").read_text())
        runs.append((_weights(root, GATED), summary["foreground_mean"]["Dice"], _recorded(root, GATED)))
    (first, dice_first, recorded_first), (second, dice_second, _), (other, _, recorded_other) = runs
    assert all(torch.equal(first[k], second[k]) for k in first)  # bit for bit, on the CPU
    assert dice_first == dice_second
    assert recorded_other["batches"] != recorded_first["batches"]
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_train_needs_a_seed_and_a_trainer_nnunet_finds(capsys, monkeypatch, tmp_path):
    from helpers import nnunet_env

    env = nnunet_env(tmp_path)
    status, err = cli_in_process(capsys, "train", "990", "2d", "0", "-tr", "nnUNetTrainerTiny", env=env,
                                 monkeypatch=monkeypatch)
    assert status == 2 and "--seed" in err
    status, err = cli_in_process(capsys, "train", "990", "2d", "0", "-tr", "NoSuchTrainer", "--seed", "1",
                                 "-device", "cpu", env=env, monkeypatch=monkeypatch)
    assert status == 2 and "trainer NoSuchTrainer not found" in err and len(err.strip().splitlines()) == 1


def test_the_pair_seed_belongs_to_the_fold_not_the_trainer():
    seeds = {pair_seed(0, "Dataset004_Hippocampus", c, f) for c in ("2d", "3d_fullres") for f in range(5)}
    assert len(seeds) == 10 and pair_seed(0, "D", "2d", 0) == pair_seed(0, "D", "2d", 0) != pair_seed(1, "D", "2d", 0)
