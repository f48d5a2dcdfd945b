"""Exact activation memory: the bench's saved-tensor count against an independent walk of the autograd graph, and
nnU-Net's planner estimate against the exact count."""
import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from helpers import SMALL_INPUT, plan_cases

from nnunet_attention.nnunet_api import build_network
from nnunet_attention.tools.bench import activation_bytes
from nnunet_attention.tools.reference_plans import reference_configurations
from nnunet_attention.model.trainers import nnUNetTrainerAttention

PLANNER_FACTOR = 1.01  # the planner's gated-minus-ungated elements vs the exact extra bytes / element size


def _networks(name):
    cm = ConfigurationManager(reference_configurations()[name])
    torch.manual_seed(0)
    return cm, {cls.__name__: build_network(cls, None, cm, 1, 3, True)
                for cls in (nnUNetTrainer, nnUNetTrainerAttention)}


def graph_walk_bytes(network, x) -> int:
    """Bytes of the unique non-parameter storages that the autograd graph of network(x) holds, found by walking
    the graph's nodes (their _saved_* attributes; saved_tensors of custom Functions)."""
    network.train()
    outputs = network(x)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    parameters = {t.untyped_storage().data_ptr() for t in [*network.parameters(), *network.buffers()]}
    seen, storages, stack = set(), {}, [o.grad_fn for o in outputs]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        tensors = list(getattr(node, "saved_tensors", ()))
        for name in dir(node):
            if name.startswith("_saved_"):
                value = getattr(node, name)
                tensors += [value] if isinstance(value, torch.Tensor) else [
                    v for v in value if isinstance(v, torch.Tensor)] if isinstance(value, (tuple, list)) else []
        for t in tensors:
            storage = t.untyped_storage()
            if storage.data_ptr() not in parameters:
                storages[storage.data_ptr()] = storage.nbytes()
        stack += [n for n, _ in node.next_functions]
    return sum(storages.values())


def test_saved_tensor_count_equals_an_independent_graph_walk_at_the_full_patch():
    cm, networks = _networks("hippocampus_3d_fullres")
    x = torch.randn(1, 1, *cm.patch_size)
    counted = {k: activation_bytes(n, x) for k, n in networks.items()}
    walked = {k: graph_walk_bytes(n, x) for k, n in networks.items()}
    for k in networks:
        assert counted[k] == pytest.approx(walked[k], rel=0.005)
    ratio = counted["nnUNetTrainerAttention"] / counted["nnUNetTrainer"]
    assert 1 < ratio <= 1.01


@pytest.mark.parametrize("name", plan_cases())
def test_planner_estimate_counts_the_gates_at_their_exact_size(name):
    _, networks = _networks(name)
    size = SMALL_INPUT[name]
    x = torch.randn(1, 1, *size)
    exact = {k: activation_bytes(n, x) / x.element_size() for k, n in networks.items()}
    estimate = {k: int(n.compute_conv_feature_map_size(size)) for k, n in networks.items()}
    extra_exact = exact["nnUNetTrainerAttention"] - exact["nnUNetTrainer"]
    extra_estimate = estimate["nnUNetTrainerAttention"] - estimate["nnUNetTrainer"]
    assert extra_exact > 0
    assert 1 / PLANNER_FACTOR <= extra_estimate / extra_exact <= PLANNER_FACTOR


def test_activation_memory_is_linear_in_the_batch_size():
    _, networks = _networks("hippocampus_3d_fullres")
    network = networks["nnUNetTrainerAttention"]
    one = activation_bytes(network, torch.randn(1, 1, 16, 24, 16))
    two = activation_bytes(network, torch.randn(2, 1, 16, 24, 16))
    assert two == 2 * one
