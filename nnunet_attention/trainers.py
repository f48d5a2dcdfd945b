"""nnU-Net trainers that train attention-gated networks; nnU-Net finds them through nnUNet_extTrainer.

The schedule variants (``nnUNetTrainerAttention_1epoch`` ... ``_8000epochs``) are made from nnU-Net's own
``nnUNetTrainer_Xepochs`` module, so they are exactly nnU-Net's list: ``SCHEDULES`` maps epochs to the
(ungated, gated) trainer names that pair up.
"""
import os
import re
from typing import Dict, Tuple

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.variants.network_architecture.nnUNetTrainerNoDeepSupervision import (
    nnUNetTrainerNoDeepSupervision,
)
from nnunetv2.training.nnUNetTrainer.variants.training_length import nnUNetTrainer_Xepochs as nnunet_schedules
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_attention.networks import build_gated_network, gates_by_level


class nnUNetTrainerAttention(nnUNetTrainer):
    """nnUNetTrainer whose network (PlainConvUNet or ResEnc, from the plans) has attention-gated skips: every skip
    but the full-resolution one, like the paper's code."""

    gate_init = "paper"
    gate_finest_skip = False
    gate_output_transform = False

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> torch.nn.Module:
        return build_gated_network(configuration_manager, num_input_channels, num_output_channels,
                                   enable_deep_supervision, gate_init=cls.gate_init,
                                   gate_finest_skip=cls.gate_finest_skip,
                                   gate_output_transform=cls.gate_output_transform)

    def initialize(self):
        super().initialize()
        gates = gates_by_level(self.network)
        gate_parameters = sum(p.numel() for gate in gates.values() for p in gate.parameters())
        self.print_to_log_file(f"Attention gates ({self.gate_init} init"
                               f"{', output transform' if self.gate_output_transform else ''}) on the skip "
                               f"connections of levels {sorted(gates)} (0 = full resolution), {gate_parameters} "
                               f"parameters.")


class nnUNetTrainerAttentionNoDeepSupervision(nnUNetTrainerAttention, nnUNetTrainerNoDeepSupervision):
    pass


class nnUNetTrainerAttentionIdentityInit(nnUNetTrainerAttention):
    """Gates that start as exact pass-throughs (see AttentionGate), for the ablation against the paper's init."""

    gate_init = "identity"


class nnUNetTrainerAttentionUniformInit(nnUNetTrainerAttention):
    """Gates that start at the same alpha = sigmoid(3) everywhere (psi's weights zero), for the initialisation study."""

    gate_init = "uniform"


class nnUNetTrainerAttentionAllSkips(nnUNetTrainerAttention):
    """Gates the full-resolution skip too (the ablation; costs more than all other gates together)."""

    gate_finest_skip = True


class nnUNetTrainerAttentionOutputTransform(nnUNetTrainerAttention):
    """The authors' gate in full: x * alpha goes through W (1x1 conv + the plan's norm) before the concatenation."""

    gate_output_transform = True


class nnUNetTrainerDemo(nnUNetTrainer):
    """nnU-Net's trainer on the demo's short schedule (docs/demo.md): DEMO_EPOCHS epochs of DEMO_ITERATIONS
    iterations, DEMO_VAL_ITERATIONS validation batches per epoch. nnU-Net ships no schedule this short with more
    than one epoch, and one epoch draws no learning curve. On the CPU it takes half the cores, because the demo
    trains two at a time (nnU-Net's -device cpu would give each all of them)."""

    DEMO_EPOCHS, DEMO_ITERATIONS, DEMO_VAL_ITERATIONS = 5, 50, 5

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.DEMO_EPOCHS
        self.num_iterations_per_epoch = self.DEMO_ITERATIONS
        self.num_val_iterations_per_epoch = self.DEMO_VAL_ITERATIONS
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))


class nnUNetTrainerAttentionDemo(nnUNetTrainerAttention, nnUNetTrainerDemo):
    """nnUNetTrainerAttention on the demo's schedule (nnUNetTrainerDemo)."""


def gated_trainer_class(name: str) -> type:
    """The trainer nnU-Net finds for -tr name (a user's own subclass too); a one-line error unless it is gated."""
    from nnunet_attention.errors import NnUNetAttentionError
    from nnunet_attention.nnunet_api import find_trainer_class

    trainer_class = find_trainer_class(name)
    if not issubclass(trainer_class, nnUNetTrainerAttention):
        raise NnUNetAttentionError(f"-tr {name} is not a gated trainer (not a subclass of nnUNetTrainerAttention); "
                                   f"see nnunet-attention trainers")
    return trainer_class


def _schedule_variants() -> Dict[int, Tuple[type, type]]:
    """epochs -> (nnU-Net's nnUNetTrainer_Xepochs class, our gated class composed with it), for every schedule in
    nnU-Net's module, plus 1000 (nnU-Net's default) -> (nnUNetTrainer, nnUNetTrainerAttention)."""
    variants = {1000: (nnUNetTrainer, nnUNetTrainerAttention)}
    for name, ungated in vars(nnunet_schedules).items():
        match = re.fullmatch(r"nnUNetTrainer_(\d+)epochs?", name)
        if match and isinstance(ungated, type):
            gated_name = name.replace("nnUNetTrainer", "nnUNetTrainerAttention", 1)
            gated = type(gated_name, (nnUNetTrainerAttention, ungated),
                         {"__module__": __name__, "__qualname__": gated_name,
                          "__doc__": f"nnUNetTrainerAttention on nnU-Net's {name} schedule."})
            variants[int(match.group(1))] = (ungated, gated)
    return dict(sorted(variants.items()))


_VARIANTS = _schedule_variants()
SCHEDULES: Dict[int, Tuple[str, str]] = {epochs: (a.__name__, b.__name__) for epochs, (a, b) in _VARIANTS.items()}
globals().update({gated.__name__: gated for epochs, (_, gated) in _VARIANTS.items() if epochs != 1000})

__all__ = ["nnUNetTrainerAttention", "nnUNetTrainerDemo", "nnUNetTrainerAttentionDemo",
           "nnUNetTrainerAttentionNoDeepSupervision", "nnUNetTrainerAttentionIdentityInit",
           "nnUNetTrainerAttentionUniformInit", "nnUNetTrainerAttentionAllSkips",
           "nnUNetTrainerAttentionOutputTransform",
           *(gated for epochs, (_, gated) in SCHEDULES.items() if epochs != 1000)]
