"""Gated vs ungated cost, as ratios measured in one process with alternating repetitions.

Both networks, their loss and their optimizer come from the trainers themselves (``nnUNetTrainer`` and the gated
trainer, each initialised on the same plans), so a train step is nnU-Net's: forward, the plan's deep-supervised
Dice+CE loss, backward, nnU-Net's SGD. Per configuration: parameters; activation memory, the exact bytes autograd
keeps for backward after one training forward (unique tensor storages packed by
``torch.autograd.graph.saved_tensors_hooks``, parameters excluded), at the plan's patch with batch size 1 (it is
linear in the batch size), each network in a fresh process; the planner's estimate for the same input
(``compute_conv_feature_map_size``, elements); train step time; on CUDA the train step's ``max_memory_allocated``;
nnU-Net sliding-window inference time.
"""
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.model.networks import unwrap
from nnunet_attention.tools.reference_plans import reference_configurations

NUM_CLASSES = 3
MEASURES = ("activations", "kernels", "train", "inference")
CPU_MAX_PATCH_VOXELS = {2: 256 * 256, 3: 32 * 64 * 64}
CPU_BATCH = 2
UNGATED_TRAINER = "nnUNetTrainer"


def bench_plans(configuration: dict) -> dict:
    """A plans dict around one configuration (named "bench"), as nnU-Net's trainer and predictor read plans (the
    trainer's constructor reads the data_identifier whenever nnUNet_preprocessed is set)."""
    dim = len(configuration["patch_size"])
    configuration = {"data_identifier": "bench", **configuration}
    return {"dataset_name": "bench", "plans_name": "bench", "label_manager": "LabelManager",
            "image_reader_writer": "SimpleITKIO", "transpose_forward": list(range(dim)),
            "transpose_backward": list(range(dim)), "original_median_spacing_after_transp": [1.0] * dim,
            "original_median_shape_after_transp": configuration["patch_size"],
            "configurations": {"bench": configuration}, "experiment_planner_used": "bench",
            "foreground_intensity_properties_per_channel": {}}


BENCH_DATASET_JSON = {"labels": {"background": 0, **{f"c{i}": i for i in range(1, NUM_CLASSES)}},
                      "channel_names": {"0": "MR"}, "file_ending": ".nii.gz", "numTraining": 0}


def paired_trainers(configuration: dict, gated_trainer: str, device: str) -> Dict[str, object]:
    """{"ungated": nnUNetTrainer, "gated": gated_trainer}, each built with its network, loss and optimizer
    (nnunet_api.built_trainer) from the same plans and seed."""
    from nnunet_attention.model.trainers import gated_trainer_class

    gated_trainer_class(gated_trainer)
    trainers = {}
    for variant, trainer in (("ungated", UNGATED_TRAINER), ("gated", gated_trainer)):
        torch.manual_seed(0)
        trainers[variant] = trainer_of(configuration, trainer, device)
    return trainers


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


def activation_bytes(network: nn.Module, x: torch.Tensor) -> int:
    """Exact bytes autograd keeps for backward after network(x) in training mode: the unique storages of every
    tensor saved for backward, parameters (and buffers) excluded."""
    excluded = {t.untyped_storage().data_ptr() for t in [*network.parameters(), *network.buffers()]}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    network.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = network(x)
    del output
    return int(sum(storages.values()))


def _set_scratch_folders(folder: str):
    """The child's own environment: nnU-Net's trainer constructor writes its log folder into nnUNet_results, and in
    2.5 to 2.7 also joins nnUNet_preprocessed (reading nothing there)."""
    os.environ["nnUNet_results"] = folder
    os.environ.setdefault("nnUNet_preprocessed", folder)


def in_child_process(function: Callable, arguments: dict, what: str, results_folder: str):
    """function(**arguments) in a child process started with spawn (a fresh interpreter, so its memory is returned
    whole when it ends) whose nnUNet_results is results_folder: nnU-Net's trainer constructor writes a log folder
    there. Returns the function's result; its exception, or the child's death, is a one-line error."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_set_scratch_folders,
                             initargs=(results_folder,)) as pool:
        try:
            return pool.submit(function, **arguments).result()
        except BrokenProcessPool:
            raise NnUNetAttentionError(f"{what} failed: its process died (out of memory?)") from None
        except Exception as error:
            message = str(error).splitlines()[0] if str(error) else ""
            raise NnUNetAttentionError(f"{what} failed: {type(error).__name__}: {message}") from None


def activation_bytes_of(configuration: dict, trainer: str, device: str) -> int:
    """activation_bytes of trainer's network at the plan's full patch, batch 1."""
    torch.manual_seed(0)
    network = trainer_of(configuration, trainer, device).network
    return activation_bytes(network, torch.randn(1, 1, *configuration["patch_size"], device=device))


def activation_bytes_in_fresh_process(configuration: dict, trainer: str, device: str) -> int:
    """activation_bytes_of in a child process: the whole graph stays alive while it is counted (several GB at real
    patches), and a separate process returns it all."""
    return in_child_process(activation_bytes_of, {"configuration": configuration, "trainer": trainer,
                                                  "device": device},
                            f"counting the activation memory of {trainer}", os.environ["nnUNet_results"])


def trainer_of(configuration: dict, trainer: str, device: str):
    """One trainer (found as nnU-Net finds it) built on a configuration's bench plans, ready for its train_step."""
    from nnunet_attention.nnunet_api import built_trainer, find_trainer_class

    return built_trainer(find_trainer_class(trainer), bench_plans(configuration), "bench", BENCH_DATASET_JSON,
                         torch.device(device))


class TrainStep:
    """One training step of a trainer on a fixed random batch. nnU-Net's own train_step (2.8.1) wherever it can run
    what is asked: on the CPU (inside CPU autocast for --amp, with a CPU GradScaler for fp16: nnU-Net's train_step
    autocasts only on CUDA) and on CUDA with fp16 (nnU-Net's autocast and GradScaler). On CUDA without AMP or with
    bf16 nnU-Net's train_step would still autocast to fp16, so there the same steps run here: autocast with the
    asked dtype (or none), backward, gradient clipping at norm 12, step."""

    def __init__(self, trainer, patch, batch, device: str, amp: Optional[str], compile_network: bool = False):
        self.trainer, self.device, self.amp = trainer, device, amp
        network = unwrap(trainer.network).to(device)
        trainer.network = torch.compile(network) if compile_network else network
        data = torch.randn(batch, 1, *patch, device=device)
        with torch.no_grad():
            outputs = network(data)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        generator = torch.Generator().manual_seed(0)
        targets = [torch.randint(0, NUM_CLASSES, (batch, 1, *o.shape[2:]), generator=generator).float().to(device)
                   for o in outputs]
        self.batch = {"data": data, "target": targets if len(targets) > 1 else targets[0]}
        self.nnunets_own = device == "cpu" or amp == "fp16"
        if device == "cpu":
            trainer.grad_scaler = torch.amp.GradScaler("cpu") if amp == "fp16" else None

    def __call__(self):
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.amp)
        if self.nnunets_own:
            with torch.autocast("cpu", dtype=dtype, enabled=self.device == "cpu" and dtype is not None):
                self.trainer.train_step(self.batch)
        else:
            trainer = self.trainer
            trainer.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device, dtype=dtype, enabled=dtype is not None):
                loss = trainer.loss(trainer.network(self.batch["data"]), self.batch["target"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainer.network.parameters(), 12)
            trainer.optimizer.step()
        _sync(self.device)


def graph_breaks(network: nn.Module, patch, batch: int, device: str) -> dict:
    """Dynamo's graph count and break reasons for one forward of the network."""
    explanation = torch._dynamo.explain(network)(torch.randn(batch, 1, *patch, device=device))
    torch._dynamo.reset()
    return {"graphs": explanation.graph_count, "breaks": explanation.graph_break_count,
            "reasons": sorted({str(b.reason).splitlines()[0] for b in explanation.break_reasons})}


# operators that only describe or allocate memory: no kernel runs for them
_NO_KERNEL = frozenset(f"aten::{name}" for name in (
    "empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "as_strided", "as_strided_", "resize_",
    "detach", "detach_", "view", "reshape", "_reshape_alias", "expand", "expand_as", "view_as", "slice", "select",
    "unsqueeze", "squeeze", "t", "transpose", "permute", "alias", "to", "_to_copy", "contiguous", "lift_fresh",
    "result_type", "promote_types", "_unsafe_view", "narrow", "split", "flatten", "set_"))


def kernel_count(network: nn.Module, x: torch.Tensor, amp: Optional[str]) -> int:
    """Kernels one forward and backward of the network runs (what launch overhead scales with): on CUDA the
    profiler's CUDA kernels; on the CPU the innermost computing aten operators (each one kernel there)."""
    from torch.profiler import ProfilerActivity, profile

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(amp)

    def step():
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            outputs = network(x)
        sum(o.float().sum() for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])).backward()
        _sync(x.device.type)

    step()  # compiles, when compiled
    cuda = x.device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as profiler:
        step()
    events = profiler.events()
    if cuda:
        return sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)

    def computing(event):
        return event.name.startswith("aten::") and event.name not in _NO_KERNEL

    def innermost(event):
        return not any(computing(child) or not innermost(child) for child in event.cpu_children)

    return sum(1 for e in events if computing(e) and innermost(e))


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _alternating(functions: Dict[str, Callable], repeats: int) -> Dict[str, List[float]]:
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
    with contextlib.redirect_stdout(io.StringIO()):  # its notice that everything-on-device needs CUDA
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                    perform_everything_on_device=device == "cuda", device=torch.device(device),
                                    verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(network.eval(), PlansManager(bench_plans(configuration)),
                                    ConfigurationManager(configuration), None, BENCH_DATASET_JSON, "bench", None)
    return predictor


def _peak_memory_cuda(step) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    return torch.cuda.max_memory_allocated() - before


def bench_configuration(name: str, configuration: dict, device: str = "cpu", repeats: int = 5,
                        amp: Optional[str] = None, compile_networks: bool = False, memory_repeats: int = 2,
                        gated_trainer: str = "nnUNetTrainerAttention", measure: Sequence[str] = MEASURES) -> dict:
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

    if repeats < 1:
        raise NnUNetAttentionError(f"--repeats must be at least 1, got {repeats}")
    cm = ConfigurationManager(configuration)
    patch, batch, reduced = bench_patch(cm, device)
    trainers = paired_trainers(configuration, gated_trainer, device)
    networks = {k: unwrap(t.network) for k, t in trainers.items()}
    result = {"name": name, "gated_trainer": gated_trainer, "device": device, "patch_size": patch, "batch_size": batch,
              "plan_patch_size": list(cm.patch_size), "plan_batch_size": cm.batch_size,
              "patch_reduced_for_cpu": reduced, "amp": amp, "compile": compile_networks}
    counts = {k: sum(p.numel() for p in n.parameters()) for k, n in networks.items()}
    result["parameters"] = {**counts, "ratio": counts["gated"] / counts["ungated"]}

    if "activations" in measure:
        _progress(name, f"activation memory at the plan's patch {'x'.join(map(str, cm.patch_size))}, batch 1")
        kept = {k: activation_bytes_in_fresh_process(configuration, trainer, device)
                for k, trainer in (("ungated", UNGATED_TRAINER), ("gated", gated_trainer))}
        estimates = {k: int(n.compute_conv_feature_map_size(cm.patch_size)) for k, n in networks.items()}
        result["activation_memory"] = {"gated_bytes": kept["gated"], "ungated_bytes": kept["ungated"],
                                       "ratio": kept["gated"] / kept["ungated"], "patch_size": list(cm.patch_size),
                                       "batch_size": 1,
                                       "what": "exact bytes autograd keeps for backward after one training forward "
                                               "(saved-tensor storages, no parameters)"}
        result["planner_estimate"] = {**estimates, "ratio": estimates["gated"] / estimates["ungated"],
                                      "what": "compute_conv_feature_map_size at the same patch (elements, batch 1)"}

    if compile_networks:
        _progress(name, "graph breaks (torch._dynamo.explain)")
        result["graph_breaks"] = {k: graph_breaks(n, patch, batch, device) for k, n in networks.items()}
    if "kernels" in measure:
        _progress(name, "kernels per forward and backward (profiler)")
        data = torch.randn(batch, 1, *patch, device=device)
        counts = {k: kernel_count(torch.compile(n) if compile_networks else n, data, amp)
                  for k, n in networks.items()}
        result["kernels"] = {**counts, "ratio": counts["gated"] / counts["ungated"],
                             "per_gate": (counts["gated"] - counts["ungated"])
                             / len(networks["gated"].decoder.attention_gates),
                             "what": "CUDA kernels (cuda) or innermost computing aten operators (cpu) of one "
                                     "training forward and backward at the bench patch and batch"}
    if "train" in measure:
        steps = {k: TrainStep(t, patch, batch, device, amp, compile_networks) for k, t in trainers.items()}
        _progress(name, "train step")
        result["train_step_seconds"] = _ratio_entry(_alternating(steps, repeats))
        if device == "cuda":
            _progress(name, "peak memory")
            peaks = {k: [_peak_memory_cuda(s) for _ in range(memory_repeats)] for k, s in steps.items()}
            result["train_peak_memory_bytes"] = _ratio_entry(peaks)
        del steps
    if "inference" not in measure:
        return result

    # larger than the patch along every axis; 2D plans predict a stack of slices
    volume = [int(p * 1.5) for p in patch] if len(patch) == 3 else [2] + [int(p * 1.5) for p in patch]
    volume_data = torch.randn(1, *volume)
    predictors = {k: _predictor(n, {**configuration, "patch_size": patch}, device) for k, n in networks.items()}
    result["inference_volume"] = volume
    _progress(name, "sliding-window inference")
    with torch.no_grad():
        inference = {k: (lambda p=p: p.predict_sliding_window_return_logits(volume_data))
                     for k, p in predictors.items()}
        result["inference_seconds"] = _ratio_entry(_alternating(inference, repeats))
    return result


def _progress(name, phase):
    print(f"    {name}: {phase}", file=sys.stderr, flush=True)


def _ratio_entry(samples: Dict[str, List[float]]) -> dict:
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {"ungated": medians["ungated"], "gated": medians["gated"], "ratio": medians["gated"] / medians["ungated"],
            "samples": samples}


def bench_in_fresh_process(name: str, configuration: dict, device: str, repeats: int, amp: Optional[str],
                           compile_networks: bool, gated_trainer: str, measure: Sequence[str] = MEASURES) -> dict:
    """bench_configuration in a child process whose nnUNet_results is a temporary folder (removed afterwards): the
    user's results and this process's environment stay as they are."""
    arguments = {"name": name, "configuration": configuration, "device": device, "repeats": repeats, "amp": amp,
                 "compile_networks": compile_networks, "gated_trainer": gated_trainer, "measure": list(measure)}
    with tempfile.TemporaryDirectory(prefix="nnunet_attention_bench_") as results:
        return in_child_process(bench_configuration, arguments, f"bench of {name}", results)


def run_bench(plans_file: Optional[str], configurations: Optional[Sequence[str]], device: str, repeats: int,
              amp: Optional[str], compile_networks: bool, gated_trainer: str,
              json_file: Optional[str] = None, measure: Optional[Sequence[str]] = None) -> List[dict]:
    """The bench command: checks its inputs, benches each configuration (progress on stderr), writes json_file."""
    from nnunet_attention.devices import resolve_device
    from nnunet_attention.files import check_output_file, write_text
    from nnunet_attention.model.trainers import gated_trainer_class

    device = resolve_device(device)
    if repeats < 1:
        raise NnUNetAttentionError(f"--repeats must be at least 1, got {repeats}")
    if plans_file and not os.path.isfile(plans_file):
        raise NnUNetAttentionError(f"plans file not found: {plans_file}")
    measure = measure or MEASURES
    unknown = [m for m in measure if m not in MEASURES]
    if unknown:
        raise NnUNetAttentionError(f"--measure {' '.join(unknown)}: choose among {' '.join(MEASURES)}")
    if json_file:
        check_output_file(json_file, overwrite=True)
    chosen = load_configurations(plans_file, configurations)
    gated_trainer_class(gated_trainer)
    results = []
    for i, (name, configuration) in enumerate(chosen.items(), start=1):
        print(f"[{i}/{len(chosen)}] {name}", file=sys.stderr, flush=True)
        results.append(bench_in_fresh_process(name, configuration, device, repeats, amp, compile_networks,
                                              gated_trainer, measure))
    if json_file:
        write_text(json_file, json.dumps({"results": results}, indent=2))
    return results


def load_configurations(plans_file: Optional[str], configurations: Optional[Sequence[str]]) -> Dict[str, dict]:
    """The configurations to bench: the built-in reference plans, or configurations of a plans file."""
    if plans_file is None:
        built_in = reference_configurations()
        unknown = [c for c in configurations or () if c not in built_in]
        if unknown:
            raise NnUNetAttentionError(f"-c {', '.join(unknown)}: without -p, -c picks among the built-in "
                                       f"plans ({', '.join(built_in)})")
        return {name: c for name, c in built_in.items() if not configurations or name in configurations}
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(plans_file)
    names = configurations or [c for c in plans.available_configurations if not c.startswith("3d_cascade")]
    unknown = [c for c in names if c not in plans.available_configurations]
    if unknown:
        raise NnUNetAttentionError(f"configuration {', '.join(unknown)} is not in {plans_file}; it has "
                                   f"{', '.join(plans.available_configurations)}")
    return {f"{plans_file.rsplit('/', 1)[-1]}:{c}": plans.get_configuration(c).configuration for c in names}


METRICS = (("parameters", "params"), ("activation_memory", "activations"), ("planner_estimate", "planner est."),
           ("kernels", "kernels"),
           ("train_step_seconds", "train step"), ("train_peak_memory_bytes", "CUDA peak"),
           ("inference_seconds", "inference"))


def format_table(results: List[dict]) -> str:
    metrics = [(key, label) for key, label in METRICS if any(key in r for r in results)]
    header = f"{'configuration':<34} {'patch x batch':<22}" + "".join(f"{label:>14}" for _, label in metrics)
    lines = [header, "-" * len(header)]
    for r in results:
        shape = "x".join(map(str, r["patch_size"])) + f" x{r['batch_size']}" + (" (cpu)" if r["patch_reduced_for_cpu"]
                                                                                 else "")
        lines.append(f"{r['name']:<34} {shape:<22}" + "".join(f"{r[key]['ratio']:>14.4f}" if key in r else
                                                              f"{'n/a':>14}" for key, _ in metrics))
    lines += ["ratios are gated / ungated; times are medians of alternating runs in one process; (cpu): patch/batch "
              "reduced for the CPU for the timings",
              "activations: exact bytes kept for backward, one training forward at the plan's full patch, batch 1; "
              "planner est.: nnU-Net's compute_conv_feature_map_size for the same input"]
    return "\n".join(lines)
