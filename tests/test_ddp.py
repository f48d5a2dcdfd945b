"""nnU-Net's DDP on the CPU (gloo, 2 ranks): gated trainers with deep supervision on and off keep identical weights
across ranks over two of nnU-Net's train_steps. With deep supervision off the unused heads do not require grad
(decided by the decoder), so no parameter waits for a gradient; nnU-Net's own ungated net fails there (upstream)."""
import json
import socket

import pytest
import torch.multiprocessing as mp
from ddp_worker import run_rank

pytestmark = pytest.mark.slow  # needs the preprocessed task (nnU-Net's planning and preprocessing)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp(trainer: str, env: dict, monkeypatch, tmp_path) -> list:
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_extTrainer"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))  # this test's own, not the shared one
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    mp.spawn(run_rank, args=(2, trainer, _free_port(), str(tmp_path)), nprocs=2, join=True)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.parametrize("trainer, deep_supervision", [("nnUNetTrainerAttention", True),
                                                       ("nnUNetTrainerAttentionNoDeepSupervision", False)])
def test_gated_trainers_train_under_ddp(trainer, deep_supervision, preprocessed_task, monkeypatch, tmp_path):
    _, env = preprocessed_task
    ranks = _ddp(trainer, env, monkeypatch, tmp_path)
    for rank in ranks:
        assert rank["error"] is None and len(rank["losses"]) == 2
        assert rank["max_weight_difference_across_ranks"] == 0.0
        heads = rank["heads_requiring_grad"]
        assert heads[-1] and all(heads[:-1]) == deep_supervision and any(heads[:-1]) == deep_supervision
    assert ranks[0]["losses"] != ranks[1]["losses"]  # different batches per rank, yet the same weights


def test_nnunets_own_no_deep_supervision_net_fails_where_ours_trains(preprocessed_task, monkeypatch, tmp_path):
    _, env = preprocessed_task
    ranks = _ddp("nnUNetTrainerNoDeepSupervision", env, monkeypatch, tmp_path)
    assert all("finished reduction in the prior iteration" in (r["error"] or "") for r in ranks)
