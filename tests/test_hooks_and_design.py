"""Gates seen by standard hooks, the decoder's pass-through of DNA's options, the trainers nnU-Net's search sees."""
import inspect

import pytest
import torch
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager
from torch import nn

from helpers import NEEDS_EXT_TRAINER, SMALL_INPUT, plan_cases

from nnunet_attention.nnunet_api import build_network
from nnunet_attention.model import trainers
from nnunet_attention.model.decoder import AttentionUNetDecoder
from nnunet_attention.model.gate_config import GateConfig
from nnunet_attention.model.networks import gates_by_level
from nnunet_attention.tools.reference_plans import reference_configurations


@pytest.mark.parametrize("name", plan_cases())
def test_a_forward_hook_on_every_gate_fires_once_per_forward_with_alpha(name):
    cm = ConfigurationManager(reference_configurations()[name])
    network = build_network(trainers.nnUNetTrainerAttention, None, cm, 1, 3, True)
    seen = {}
    gates = gates_by_level(network)
    for level, gate in gates.items():
        gate.register_forward_hook(lambda module, inputs, alpha, level=level: seen.setdefault(level, []).append(
            (inputs[0].shape, alpha)))
    x = torch.randn(1, 1, *SMALL_INPUT[name])
    for passes in (1, 2):
        network(x)
        assert sorted(seen) == sorted(gates) and all(len(calls) == passes for calls in seen.values())
    for level, calls in seen.items():
        skip_shape, alpha = calls[-1]
        stride = gates[level].stride
        assert alpha.shape == (1, 1, *[s // st for s, st in zip(skip_shape[2:], stride)])
        assert alpha.min() >= 0 and alpha.max() <= 1


def test_decoder_takes_and_passes_on_every_option_of_dna_decoder():
    ours = inspect.signature(AttentionUNetDecoder.__init__).parameters
    theirs = inspect.signature(UNetDecoder.__init__).parameters
    dropped = [p for p in theirs if p not in ours]
    assert not dropped, f"AttentionUNetDecoder drops UNetDecoder options {dropped}"

    cm = ConfigurationManager(reference_configurations()["hippocampus_3d_fullres"])
    encoder = build_network(trainers.nnUNetTrainerAttention, None, cm, 1, 3, True).encoder
    decoder = AttentionUNetDecoder(encoder, 3, 2, True, norm_op=nn.BatchNorm3d, norm_op_kwargs={"eps": 1e-3},
                                   dropout_op=nn.Dropout3d, dropout_op_kwargs={"p": 0.1}, nonlin=nn.ReLU,
                                   nonlin_kwargs={"inplace": False}, conv_bias=False,
                                   gates=GateConfig(output_transform=True))
    norms = [m for m in decoder.stages.modules() if isinstance(m, (nn.BatchNorm3d, nn.InstanceNorm3d))]
    assert norms and all(isinstance(m, nn.BatchNorm3d) for m in norms)
    assert any(isinstance(m, nn.Dropout3d) for m in decoder.stages.modules())
    assert not any(isinstance(m, nn.LeakyReLU) for m in decoder.stages.modules())
    assert all(t.bias is None for t in decoder.transpconvs)
    assert all(isinstance(g.output_transform[1], nn.BatchNorm3d) for g in decoder.attention_gates)


def test_trainer_module_exports_only_our_trainers_and_every_schedule_pairs_with_nnunets():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.training.nnUNetTrainer.variants.training_length import nnUNetTrainer_Xepochs as nnunet_schedules

    exported = [getattr(trainers, name) for name in trainers.__all__]
    ungated = [t.__name__ for t in exported if not issubclass(t, trainers.nnUNetTrainerAttention)]
    assert ungated == ["nnUNetTrainerDemo"]  # the demo's reference: nnU-Net's trainer on the demo's schedule
    assert issubclass(trainers.nnUNetTrainerAttentionDemo, trainers.nnUNetTrainerDemo)
    assert "nnUNetTrainer" not in trainers.__all__
    nnunet_names = {n for n in vars(nnunet_schedules) if n.startswith("nnUNetTrainer_")}
    versions = trainers.SCHEDULE_VERSIONS
    assert set(versions["nnUNetTrainer"].values()) == nnunet_names | {"nnUNetTrainer"}
    gate_variants = {"nnUNetTrainerAttention", *(f"nnUNetTrainerAttention{v}" for v in (
        "IdentityInit", "UniformInit", "AllSkips", "OutputTransform"))}
    assert set(versions) == gate_variants | {"nnUNetTrainer"}
    for variant in gate_variants:
        assert versions[variant].keys() == versions["nnUNetTrainer"].keys()
        for epochs, name in versions[variant].items():
            gated_class, ungated = getattr(trainers, name), versions["nnUNetTrainer"][epochs]
            assert name in trainers.__all__ and issubclass(gated_class, getattr(trainers, variant))
            assert issubclass(gated_class, getattr(nnunet_schedules, ungated, nnUNetTrainer))
            assert gated_class.gates == getattr(trainers, variant).gates
    assert trainers.schedule_epochs("nnUNetTrainerAttentionAllSkips_50epochs") == 50


def test_output_transform_trainer_builds_gates_with_the_plans_norm():
    cm = ConfigurationManager(reference_configurations()["pancreas_3d_fullres"])
    network = build_network(trainers.nnUNetTrainerAttentionOutputTransform, None, cm, 1, 3, True)
    gates = gates_by_level(network)
    assert gates and all(isinstance(g.output_transform[1], nn.InstanceNorm3d) for g in gates.values())
    outputs = network(torch.randn(1, 1, 8, 64, 64))
    assert outputs[0].shape == (1, 3, 8, 64, 64)


def test_library_code_sets_no_matplotlib_backend_or_warning_filter():
    import pathlib

    import nnunet_attention

    package = pathlib.Path(nnunet_attention.__file__).parent
    for source in package.rglob("*.py"):
        text = source.read_text()
        assert "matplotlib.use(" not in text, source
        if source.name != "cli.py":
            assert "filterwarnings" not in text, source


def test_no_line_is_longer_than_120_columns_in_the_package_scripts_and_tests():
    import pathlib

    root = pathlib.Path(__file__).parents[1]
    long = [f"{source.relative_to(root)}:{number}" for folder in ("nnunet_attention", "scripts", "tests")
            for source in (root / folder).rglob("*.py")
            for number, line in enumerate(source.read_text().splitlines(), 1) if len(line) > 120]
    assert long == []


@NEEDS_EXT_TRAINER
def test_bench_finds_a_users_own_trainer_as_nnunet_does(monkeypatch):
    from helpers import TEST_TRAINERS

    from nnunet_attention.model.trainers import gated_trainer_class
    from nnunet_attention.errors import NnUNetAttentionError

    monkeypatch.setenv("nnUNet_extTrainer", str(TEST_TRAINERS))
    assert gated_trainer_class("nnUNetTrainerAttentionTiny").__name__ == "nnUNetTrainerAttentionTiny"
    with pytest.raises(NnUNetAttentionError, match="not a gated trainer"):
        gated_trainer_class("nnUNetTrainerTiny")
