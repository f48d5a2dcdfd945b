"""Gated vs ungated cost, as ratios measured in one process with alternating repetitions.

For each configuration: parameters; train step time (forward + nnU-Net's deep-supervised Dice+CE loss + backward +
SGD step); peak memory of a train step (CUDA: max_memory_allocated; CPU: peak RSS of a fresh subprocess per
variant, minus its RSS just before the step); nnU-Net sliding-window inference time on a volume larger than the
patch (nnUNetPredictor, no mirroring); and the planner's estimate (compute_conv_feature_map_size at the plan's patch).
"""
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from nnunet_attention.reference_plans import reference_configurations

NUM_CLASSES = 3
CPU_MAX_PATCH_VOXELS = {2: 256 * 256, 3: 32 * 64 * 64}
CPU_BATCH = 2


def _networks(configuration_manager, gated_trainer: str = "nnUNetTrainerAttention", deep_supervision=True):
    """The ungated network nnUNetTrainer builds and the gated one gated_trainer builds, from the same plans."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_attention import trainers

    args = (None, configuration_manager, 1, NUM_CLASSES, deep_supervision)
    return {"ungated": nnUNetTrainer.build_network_architecture(*args),
            "gated": getattr(trainers, gated_trainer).build_network_architecture(*args)}


def _total_strides(configuration_manager) -> np.ndarray:
    return np.prod(np.array(configuration_manager.network_arch_init_kwargs["strides"]), axis=0)


def bench_patch(configuration_manager, device: str):
    """The plan's patch and batch; on CPU shrunk (keeping divisibility by the total stride) to keep runs short."""
    patch = np.array(configuration_manager.patch_size, dtype=int)
    batch = configuration_manager.batch_size
    if device != "cpu":
        return [int(p) for p in patch], batch, False
    limit = CPU_MAX_PATCH_VOXELS[len(patch)]
    strides = _total_strides(configuration_manager)
    while np.prod(patch) > limit:
        axis = int(np.argmax(patch / strides))
        if patch[axis] - strides[axis] < strides[axis]:
            break
        patch[axis] -= strides[axis]
    reduced = bool(np.any(patch != np.array(configuration_manager.patch_size))) or batch > CPU_BATCH
    return [int(p) for p in patch], min(batch, CPU_BATCH), reduced


class _TrainStep:
    def __init__(self, network, patch, batch, device, amp: Optional[str]):
        from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
        from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
        from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

        self.network, self.device, self.amp = network.to(device), device, amp
        self.optimizer = torch.optim.SGD(network.parameters(), 1e-2, momentum=0.99, nesterov=True)
        self.data = torch.randn(batch, 1, *patch, device=device)
        with torch.no_grad():
            shapes = [o.shape[2:] for o in network(self.data)]
        generator = torch.Generator().manual_seed(0)
        self.targets = [torch.randint(0, NUM_CLASSES, (batch, 1, *s), generator=generator).float().to(device)
                        for s in shapes]
        weights = np.array([1 / (2 ** i) for i in range(len(shapes))])
        loss = DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                              weight_ce=1, weight_dice=1, dice_class=MemoryEfficientSoftDiceLoss)
        self.loss = DeepSupervisionWrapper(loss, weights / weights.sum())
        self.scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None

    def __call__(self):
        self.optimizer.zero_grad(set_to_none=True)
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.amp)
        with torch.autocast(self.device, dtype=dtype, enabled=dtype is not None):
            loss = self.loss(self.network(self.data), self.targets)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        _sync(self.device)


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _alternating(functions: Dict[str, callable], repeats: int) -> Dict[str, List[float]]:
    """Times each function repeats times, alternating the order every round; one untimed warm-up call each."""
    for f in functions.values():
        f()
    times = {name: [] for name in functions}
    names = list(functions)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            functions[name]()
            times[name].append(time.perf_counter() - start)
    return times


def _predictor(network, configuration: dict, device):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

    network.decoder.deep_supervision = False  # as nnU-Net's predictor sets it
    dim = len(configuration["patch_size"])
    plans = PlansManager({"dataset_name": "bench", "plans_name": "bench", "label_manager": "LabelManager",
                          "image_reader_writer": "SimpleITKIO", "transpose_forward": list(range(dim)),
                          "transpose_backward": list(range(dim)), "configurations": {"bench": configuration}})
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                perform_everything_on_device=device == "cuda", device=torch.device(device),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(network.eval(), plans, ConfigurationManager(configuration), None,
                                    {"labels": {"background": 0, **{f"c{i}": i for i in range(1, NUM_CLASSES)}}},
                                    "bench", None)
    return predictor


def _peak_memory_cpu(configuration: dict, gated_trainer: str, variant: str, patch, batch) -> int:
    """Peak RSS growth over one train step, in a fresh interpreter (CPU has no allocator statistics)."""
    code = (
        "import json, resource, sys, torch\n"
        "from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager\n"
        "from nnunet_attention.bench import _networks, _TrainStep\n"
        "torch.set_num_threads(1)\n"
        "c = json.loads(sys.argv[1])\n"
        "network = _networks(ConfigurationManager(c['configuration']), c['trainer'])[c['variant']]\n"
        "step = _TrainStep(network, c['patch'], c['batch'], 'cpu', None)\n"
        "before = int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()\n"
        "step()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)\n"
    )
    arguments = json.dumps({"configuration": configuration, "trainer": gated_trainer, "variant": variant,
                            "patch": patch, "batch": batch})
    result = subprocess.run([sys.executable, "-c", code, arguments], capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1])


def _peak_memory_cuda(step) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    return torch.cuda.max_memory_allocated() - before


def bench_configuration(name: str, configuration: dict, device: str = "cpu", repeats: int = 5,
                        amp: Optional[str] = None, compile_networks: bool = False, memory_repeats: int = 2,
                        gated_trainer: str = "nnUNetTrainerAttention") -> dict:
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

    cm = ConfigurationManager(configuration)
    patch, batch, reduced = bench_patch(cm, device)
    torch.manual_seed(0)
    networks = _networks(cm, gated_trainer)
    result = {"name": name, "gated_trainer": gated_trainer, "device": device, "patch_size": patch, "batch_size": batch,
              "plan_patch_size": list(cm.patch_size), "plan_batch_size": cm.batch_size,
              "patch_reduced_for_cpu": reduced, "amp": amp, "compile": compile_networks}
    counts = {k: sum(p.numel() for p in n.parameters()) for k, n in networks.items()}
    estimates = {k: int(n.compute_conv_feature_map_size(cm.patch_size)) for k, n in networks.items()}
    result["parameters"] = {**counts, "ratio": counts["gated"] / counts["ungated"]}
    result["planner_estimate"] = {**estimates, "ratio": estimates["gated"] / estimates["ungated"]}

    steps = {k: _TrainStep(torch.compile(n) if compile_networks else n, patch, batch, device, amp)
             for k, n in networks.items()}
    _progress(name, "train step")
    times = _alternating(steps, repeats)
    result["train_step_seconds"] = _ratio_entry(times)

    _progress(name, "peak memory")
    if device == "cuda":
        peaks = {k: [_peak_memory_cuda(s) for _ in range(memory_repeats)] for k, s in steps.items()}
    else:
        peaks = {k: [] for k in steps}
        for r in range(memory_repeats):
            for k in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
                peaks[k].append(_peak_memory_cpu(configuration, gated_trainer, k, patch, batch))
    result["train_peak_memory_bytes"] = _ratio_entry(peaks)
    del steps

    # larger than the patch along every axis; 2D plans predict a stack of slices
    volume = [int(p * 1.5) for p in patch] if len(patch) == 3 else [2] + [int(p * 1.5) for p in patch]
    volume_data = torch.randn(1, *volume)
    predictors = {k: _predictor(n, {**configuration, "patch_size": patch}, device) for k, n in networks.items()}
    result["inference_volume"] = volume
    _progress(name, "sliding-window inference")
    with torch.no_grad():
        inference = {k: (lambda p=p: p.predict_sliding_window_return_logits(volume_data))
                     for k, p in predictors.items()}
        result["inference_seconds"] = _ratio_entry(_alternating(inference, max(2, repeats // 2)))
    return result


def _progress(name, phase):
    print(f"    {name}: {phase}", file=sys.stderr, flush=True)


def _ratio_entry(samples: Dict[str, List[float]]) -> dict:
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {"ungated": medians["ungated"], "gated": medians["gated"], "ratio": medians["gated"] / medians["ungated"],
            "samples": samples}


def load_configurations(plans_file: Optional[str], configurations: Optional[Sequence[str]]) -> Dict[str, dict]:
    if plans_file is None:
        return reference_configurations()
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(plans_file)
    names = configurations or [c for c in plans.available_configurations if not c.startswith("3d_cascade")]
    return {f"{os.path.basename(plans_file)}:{c}": plans.get_configuration(c).configuration for c in names}


METRICS = (("parameters", "params"), ("train_step_seconds", "train step"), ("train_peak_memory_bytes", "peak mem"),
           ("inference_seconds", "inference"), ("planner_estimate", "planner est."))


def format_table(results: List[dict]) -> str:
    header = f"{'configuration':<34} {'patch x batch':<22}" + "".join(f"{label:>14}" for _, label in METRICS)
    lines = [header, "-" * len(header)]
    for r in results:
        shape = "x".join(map(str, r["patch_size"])) + f" x{r['batch_size']}" + (" (cpu)" if r["patch_reduced_for_cpu"]
                                                                                 else "")
        lines.append(f"{r['name']:<34} {shape:<22}" + "".join(f"{r[key]['ratio']:>14.3f}" for key, _ in METRICS))
    lines.append("ratios are gated / ungated (medians of alternating runs); (cpu): patch/batch reduced for the CPU")
    return "\n".join(lines)
