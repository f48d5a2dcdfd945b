"""Paired trainings (nnunet-attention train --seed): both trainers of a fold see identical batches and start their
shared weights equal; a seeded training repeats exactly; without the seed nothing is paired (nnU-Net's behaviour)."""
import json

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
