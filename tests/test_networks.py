"""Gated networks built from real plans' configurations, next to the ungated networks nnU-Net builds from them."""
from pathlib import Path

import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from helpers import SMALL_INPUT, plan_cases

from nnunet_attention.nnunet_api import build_network
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.model import trainers
from nnunet_attention.model.gate import GATE_INITS
from nnunet_attention.model.gate_config import GateConfig
from nnunet_attention.model.networks import (AttentionPlainConvUNet, AttentionResidualEncoderUNet, build_gated_network,
                                       gates_by_level)
from nnunet_attention.tools.reference_plans import reference_configurations
from nnunet_attention.model.trainers import nnUNetTrainerAttention

CONFIGURATIONS = reference_configurations()
# small inputs keep CPU time down; each is a multiple of the configuration's total stride


def _pair(name, deep_supervision):
    cm = ConfigurationManager(CONFIGURATIONS[name])
    torch.manual_seed(0)
    plain = build_network(nnUNetTrainer, None, cm, 1, 3, deep_supervision)
    gated = build_network(nnUNetTrainerAttention, None, cm, 1, 3, deep_supervision)
    return cm, plain, gated


@pytest.mark.parametrize("name", plan_cases(CONFIGURATIONS))
def test_gated_network_matches_plain_outputs_keys_and_estimates(name):
    cm, plain, gated = _pair(name, True)
    n_stages = cm.network_arch_init_kwargs["n_stages"]
    expected_class = AttentionResidualEncoderUNet if "resenc" in name else AttentionPlainConvUNet
    assert isinstance(gated, expected_class)
    assert sorted(gates_by_level(gated)) == list(range(1, n_stages - 1))  # every skip but the full-resolution one

    x = torch.randn(1, 1, *SMALL_INPUT[name])
    with torch.no_grad():
        plain_out, gated_out = plain(x), gated(x)
    assert [o.shape for o in gated_out] == [o.shape for o in plain_out]
    assert len(gated_out) == n_stages - 1

    plain_keys, gated_keys = set(plain.state_dict()), set(gated.state_dict())
    assert plain_keys <= gated_keys
    assert all(".attention_gates." in k for k in gated_keys - plain_keys)

    n_plain = sum(p.numel() for p in plain.parameters())
    n_gated = sum(p.numel() for p in gated.parameters())
    print(f"\n{name}: parameters {n_plain} -> {n_gated} (+{100 * (n_gated / n_plain - 1):.2f}%)")
    assert n_gated > n_plain
    assert gated.compute_conv_feature_map_size(cm.patch_size) > plain.compute_conv_feature_map_size(cm.patch_size)


@pytest.mark.parametrize("name", ["hippocampus_3d_fullres", "pancreas_2d"])
def test_state_dict_loads_with_deep_supervision_toggled(name):
    _, _, with_ds = _pair(name, True)
    _, _, without_ds = _pair(name, False)
    without_ds.load_state_dict(with_ds.state_dict())
    with_ds.load_state_dict(without_ds.state_dict())
    x = torch.randn(1, 1, *SMALL_INPUT[name])
    with torch.no_grad():
        torch.testing.assert_close(with_ds(x)[0], without_ds(x))


def test_deep_supervision_switch_reaches_the_gated_decoder():
    _, _, gated = _pair("hippocampus_3d_fullres", True)
    gated.decoder.deep_supervision = False
    with torch.no_grad():
        assert isinstance(gated(torch.randn(1, 1, 16, 24, 16)), torch.Tensor)


def test_identity_init_network_reproduces_the_plain_network():
    cm, plain, _ = _pair("hippocampus_3d_fullres", True)
    gated = build_gated_network(cm, 1, 3, True, gates=GateConfig(init="identity"))
    missing, unexpected = gated.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(".attention_gates." in k for k in missing)
    x = torch.randn(2, 1, 16, 24, 16)
    with torch.no_grad():
        for a, b in zip(plain(x), gated(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("class_name", ["dynamic_network_architectures.architectures.unet.ResidualUNet",
                                        "my_lab.nets.FancyUNet"])
def test_unsupported_architecture_names_it_and_lists_the_supported(class_name):
    configuration = reference_configurations()["hippocampus_3d_fullres"]
    configuration["architecture"]["network_class_name"] = class_name
    with pytest.raises(NnUNetAttentionError) as error:
        build_network(nnUNetTrainerAttention, None, ConfigurationManager(configuration), 1, 3, True)
    message = str(error.value)
    assert class_name in message and "PlainConvUNet" in message and "ResidualEncoderUNet" in message


def test_bare_class_names_in_plans_are_gated_too():
    configuration = reference_configurations()["hippocampus_3d_fullres"]
    configuration["architecture"]["network_class_name"] = "PlainConvUNet"
    network = build_network(nnUNetTrainerAttention, None, ConfigurationManager(configuration), 1, 3)
    assert sorted(gates_by_level(network)) == [1, 2]


@pytest.mark.parametrize("built_with", GATE_INITS)
@pytest.mark.parametrize("trained_with", GATE_INITS)
def test_saved_weights_predict_identically_whatever_the_default_start(trained_with, built_with):
    """A checkpoint of any gate start, loaded into a network built with any other (as nnUNetv2_predict does when the
    default start changes between training and prediction), computes bit-identically: weights and the gain buffer
    carry the whole function, the start only matters at step 0."""
    cm = ConfigurationManager(CONFIGURATIONS["hippocampus_3d_fullres"])
    torch.manual_seed(1)
    trained = build_gated_network(cm, 1, 3, False, gates=GateConfig(init=trained_with)).eval()
    with torch.no_grad():  # move every weight away from its start, as training would
        for parameter in trained.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    torch.manual_seed(2)
    loaded = build_gated_network(cm, 1, 3, False, gates=GateConfig(init=built_with)).eval()
    loaded.load_state_dict(trained.state_dict())
    x = torch.randn(1, 1, 16, 24, 16)
    with torch.no_grad():
        assert torch.equal(trained(x), loaded(x))


@pytest.mark.parametrize("gates, levels", [(GateConfig(), [1, 2]), (GateConfig(levels="all"), [0, 1, 2]),
                                           (GateConfig(levels=(2, 0)), [0, 2]), (GateConfig(deepest=1), [2]),
                                           (GateConfig(deepest=9), [0, 1, 2])])
def test_gate_configuration_picks_the_gated_levels(gates, levels):
    cm = ConfigurationManager(CONFIGURATIONS["hippocampus_3d_fullres"])
    network = build_gated_network(cm, 1, 3, True, gates=gates)
    by_level = gates_by_level(network)
    assert list(by_level) == levels
    strides = cm.network_arch_init_kwargs["strides"]
    assert all(gate.stride == tuple(strides[level + 1]) for level, gate in by_level.items())
    with torch.no_grad():
        outputs = network(torch.randn(1, 1, 16, 24, 16))
    assert [o.shape[2:] for o in outputs][0] == (16, 24, 16)


@pytest.mark.parametrize("gates, message", [(dict(init="zero"), "gate init"), (dict(levels="finest"), "levels"),
                                            (dict(levels=()), "non-empty"), (dict(deepest=0), "at least 1"),
                                            (dict(levels=(1,), deepest=1), "not both")])
def test_gate_configuration_refuses_what_it_cannot_build(gates, message):
    with pytest.raises(ValueError, match=message):
        GateConfig(**gates)


def test_a_level_the_plan_lacks_is_named():
    cm = ConfigurationManager(CONFIGURATIONS["hippocampus_3d_fullres"])
    with pytest.raises(ValueError, match="levels 0..2; cannot gate level 5"):
        build_gated_network(cm, 1, 3, True, gates=GateConfig(levels=(1, 5)))


def test_checkpoints_of_the_trainers_before_gate_configuration_load_and_predict_the_same():
    """tests/data/gated_networks_0.1.pt was written by the code before GateConfig (the trainers' three gate_*
    attributes): every trainer's network, weights moved off their start, and its output on a fixed input. The same
    seed builds the same weights now (so a paired training draws the same start), and the old weights compute the
    same output."""
    stored = torch.load(Path(__file__).parent / "data" / "gated_networks_0.1.pt", weights_only=True)
    configuration = CONFIGURATIONS["hippocampus_3d_fullres"]
    configuration["architecture"]["arch_kwargs"]["features_per_stage"] = stored["features_per_stage"]
    cm = ConfigurationManager(configuration)
    for name, before in stored["networks"].items():
        torch.manual_seed(1)  # as the fixture was written: the same start, the same moves off it
        network = build_network(getattr(trainers, name), None, cm, 1, 3, False).eval()
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
        built = network.state_dict()
        assert list(built) == list(before["network_weights"]), name  # names and order: plain and old weights load
        assert all(torch.equal(built[k], v) for k, v in before["network_weights"].items()), name  # same init draws
        network.load_state_dict(before["network_weights"])
        with torch.no_grad():
            assert torch.equal(network(stored["input"]), before["output"]), name


def test_a_trainer_setting_the_old_gate_attributes_is_refused():
    with pytest.raises(TypeError, match="set gates = GateConfig"):
        type("nnUNetTrainerMine", (nnUNetTrainerAttention,), {"gate_init": "identity"})
