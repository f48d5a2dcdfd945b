"""Paired trainings (nnunet-attention train --seed): both trainers of a fold see identical batches and start their
shared weights equal; a seeded training repeats exactly; without the seed nothing is paired (nnU-Net's behaviour)."""
import json
import random
import subprocess

import numpy as np
import pytest
import torch
from helpers import CLI, DATASET_ID, cli_in_process, fold_dir, private_copy, run

from nnunet_attention.model.pairing import pair_seed

UNGATED, GATED = "nnUNetTrainerTinyRecording", "nnUNetTrainerAttentionTinyRecording"


def _paired(env, trainer, seed):
    return run([*CLI, "train", str(DATASET_ID), "2d", "0", "-tr", trainer, "--seed", str(seed), "-device", "cpu"],
               {**env, "nnUNet_n_proc_DA": "2"})  # two augmentation workers: the ordered multi-worker path


def _recorded(root, trainer) -> dict:
    return json.loads((fold_dir(root, trainer, "2d", 0) / "recorded.json").read_text())


def _weights(root, trainer) -> dict:
    return torch.load(fold_dir(root, trainer, "2d", 0) / "checkpoint_final.pth", map_location="cpu",
                      weights_only=False)["network_weights"]


@pytest.mark.slow
def test_paired_trainers_see_the_same_batches_and_start_equal_other_seeds_differ(preprocessed_task, tmp_path):
    """Seed 5: the ungated and gated trainers of a pair see identical batches and start their shared tensors equal;
    under seed 6 the gated training sees other batches and ends elsewhere; nnU-Net's own command trains unpaired.
    That a seeded training repeats bit for bit is tested by test_gpu_check's CPU run of scripts/gpu_check.py (its
    pairing part: the gated trainer twice under seed 0, nnU-Net's augmentation workers, weights and Dice equal)."""
    trained = {}
    for name, trainer, seed in (("pair", UNGATED, 5), ("pair", GATED, 5), ("other", GATED, 6)):
        root, env = (trained[name][0], trained[name][1]) if name in trained else private_copy(
            preprocessed_task[0], tmp_path / name)
        _paired(env, trainer, seed)
        trained[name] = (root, env)
    (pair, _), (other, _) = trained["pair"], trained["other"]
    ungated, gated = _recorded(pair, UNGATED), _recorded(pair, GATED)
    assert len(ungated["batches"]) == 4 and gated["batches"] == ungated["batches"]  # data and targets, in order
    assert set(ungated["start"]) < set(gated["start"])  # the gates are extra
    assert all(gated["start"][k] == v for k, v in ungated["start"].items())  # every shared tensor starts equal
    log = next(fold_dir(pair, GATED, "2d", 0).glob("training_log_*.txt")).read_text()
    assert f"pair seed {pair_seed(5, 'Dataset990_AttentionSynth', '2d', 0)}" in log and "2 augmentation workers" in log

    first, different = (_weights(root, GATED) for root in (pair, other))
    assert _recorded(other, GATED)["batches"] != gated["batches"]
    assert any(not torch.equal(first[k], different[k]) for k in first)

    unpaired, unpaired_env = private_copy(preprocessed_task[0], tmp_path / "unpaired")
    run(["nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", GATED, "-device", "cpu"],
        {**unpaired_env, "nnUNet_n_proc_DA": "2"})  # nnU-Net's own command: its own randomness
    assert _recorded(unpaired, GATED)["batches"] != gated["batches"]
    assert "Paired" not in next(fold_dir(unpaired, GATED, "2d", 0).glob("training_log_*.txt")).read_text()


@pytest.mark.slow
def test_a_resumed_paired_training_draws_its_uninterrupted_partners_batches(preprocessed_task, tmp_path):
    """Killed after 2 of 4 epochs and resumed with --c: the resumed run's batches continue exactly where the
    uninterrupted run's stand (two augmentation workers), pairing.json records both starts, and resuming under
    another seed is refused."""
    trainer = "nnUNetTrainerAttentionTinyResumableRecording"
    whole, whole_env = private_copy(preprocessed_task[0], tmp_path / "whole")
    _paired(whole_env, trainer, 5)
    cut, cut_env = private_copy(preprocessed_task[0], tmp_path / "cut")
    command = [*CLI, "train", str(DATASET_ID), "2d", "0", "-tr", trainer, "--seed", "5", "-device", "cpu"]
    env = {**cut_env, "nnUNet_n_proc_DA": "2"}
    stopped = subprocess.run(command, env={**env, "NNUNET_ATTENTION_TEST_STOP_AT_EPOCH": "2"}, capture_output=True,
                             text=True)
    assert stopped.returncode == 3, stopped.stderr[-2000:]
    first_half = _recorded(cut, trainer)["batches"]
    refused = subprocess.run([*command[:-4], "--seed", "6", "-device", "cpu", "--c"], env=env, capture_output=True,
                             text=True)
    assert refused.returncode != 0 and "resume with --seed 5" in refused.stderr
    run([*command, "--c"], env)
    batches = _recorded(whole, trainer)["batches"]
    assert len(batches) == 8 and len(first_half) == 4
    assert first_half + _recorded(cut, trainer)["batches"] == batches
    pairing = json.loads((fold_dir(cut, trainer, "2d", 0) / "pairing.json").read_text())
    assert pairing["study_seed"] == 5 and [s["epoch"] for s in pairing["starts"]] == [0, 2]
    resumed, uninterrupted = _weights(cut, trainer), _weights(whole, trainer)
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)  # on the CPU: the same training


def test_seed_streams_are_independent_of_each_other_and_of_the_generators():
    """Python, numpy and torch draw different numbers under one stream; weights and batch 0 draw different ones."""
    from nnunet_attention.model.pairing import TRAINING_BATCHES, WEIGHTS, seed_stream

    draws = {}
    for stream in ((1, WEIGHTS), (1, TRAINING_BATCHES, 0)):
        seed_stream(*stream)
        draws[stream] = (np.random.randint(2 ** 31), int(torch.randint(2 ** 31, (1,))), random.randrange(2 ** 31))
    (weights, batch) = draws.values()
    assert len(set(weights)) == 3 and not set(weights) & set(batch)
    seed_stream(1, TRAINING_BATCHES, 0)
    assert np.random.randint(2 ** 31) == batch[0]  # and the same stream repeats


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
