"""nnU-Net's DDP on the CPU (gloo, 2 ranks): gated trainers with deep supervision on and off keep identical weights
across ranks over two of nnU-Net's train_steps. With deep supervision off the unused heads do not require grad
(decided by the decoder), so no parameter waits for a gradient; nnU-Net's own ungated net fails there (upstream)."""
import json
import socket

import pytest
import torch.multiprocessing as mp
from ddp_worker import run_rank

pytestmark = pytest.mark.slow  # needs the preprocessed task (nnU-Net's planning and preprocessing)

GATED = {"nnUNetTrainerAttention": True, "nnUNetTrainerAttentionNoDeepSupervision": False}  # deep supervision
NNUNETS_OWN = "nnUNetTrainerNoDeepSupervision"


def _free_ports(count: int) -> list:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:  # all bound at once: distinct ports
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_gated_trainers_train_under_ddp_where_nnunets_own_no_deep_supervision_net_fails(preprocessed_task,
                                                                                       monkeypatch, tmp_path):
    _, env = preprocessed_task
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_extTrainer"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))  # this test's own, not the shared one
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    trainers = [*GATED, NNUNETS_OWN]
    mp.spawn(run_rank, args=(2, list(zip(trainers, _free_ports(len(trainers)))), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    for trainer, deep_supervision in GATED.items():
        for rank in ranks:
            result = rank[trainer]
            assert result["error"] is None and len(result["losses"]) == 2, trainer
            assert result["max_weight_difference_across_ranks"] == 0.0, trainer
            heads = result["heads_requiring_grad"]
            assert heads[-1] and all(heads[:-1]) == deep_supervision and any(heads[:-1]) == deep_supervision
        assert ranks[0][trainer]["losses"] != ranks[1][trainer]["losses"]  # other batches per rank, same weights
    assert all("finished reduction in the prior iteration" in (r[NNUNETS_OWN]["error"] or "") for r in ranks)
