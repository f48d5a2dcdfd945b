"""One rank of the DDP test (tests/test_ddp.py), started with torch.multiprocessing.spawn over gloo on the CPU.

For each trainer in turn, nnU-Net builds and initialises it (real preprocessed data, its dataloaders, loss and
optimizer); its network is then wrapped as nnU-Net wraps it (SyncBatchNorm conversion, DistributedDataParallel
without find_unused_parameters), and two of nnU-Net's own train_steps run. nnU-Net's initialize would wrap with
device_ids=[rank], which DDP accepts only for CUDA modules: on the CPU the wrap is done here, and the loss is built
again with the trainer in DDP mode, as initialize would have built it. Each trainer is built outside a process group
(nnU-Net's constructor moves a DDP trainer to CUDA) and gets its own (port); the ranks start once for all of them
(each imports torch and nnU-Net)."""
import json
import os

import torch
import torch.distributed as dist


def run_rank(rank: int, world: int, trainers_and_ports: list, out: str):
    torch.set_num_threads(1)
    results = {name: _two_steps(rank, world, name, port) for name, port in trainers_and_ports}
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)


def _two_steps(rank: int, world: int, trainer_name: str, port: int) -> dict:
    from nnunetv2.run.run_training import get_trainer_from_args

    from nnunet_attention.nnunet_api import build_loss

    trainer = get_trainer_from_args("990", "3d_fullres", 0, trainer_name, device=torch.device("cpu"))
    trainer.initialize()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    trainer.is_ddp, trainer.local_rank = True, rank
    trainer.network = torch.nn.parallel.DistributedDataParallel(
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(trainer.network))
    trainer.loss = build_loss(trainer)
    train_loader, _ = trainer.get_dataloaders()
    torch.manual_seed(rank)  # each rank its own batches, as nnU-Net's per-rank dataloaders draw
    result = {"losses": [], "error": None}
    try:
        for _ in range(2):
            result["losses"].append(float(trainer.train_step(next(train_loader))["loss"]))
    except RuntimeError as error:
        result["error"] = str(error).splitlines()[0]
    if result["error"] is None:
        weights = torch.cat([p.detach().flatten() for p in trainer.network.module.parameters()])
        gathered = [torch.empty_like(weights) for _ in range(world)]
        dist.all_gather(gathered, weights)
        result["max_weight_difference_across_ranks"] = float(max((g - weights).abs().max() for g in gathered))
    result["heads_requiring_grad"] = [all(p.requires_grad for p in head.parameters())
                                      for head in trainer.network.module.decoder.seg_layers]
    dist.destroy_process_group()
    return result
