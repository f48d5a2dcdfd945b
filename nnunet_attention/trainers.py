"""nnU-Net trainers that train attention-gated networks; nnU-Net finds them through nnUNet_extTrainer."""
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.variants.network_architecture.nnUNetTrainerNoDeepSupervision import (
    nnUNetTrainerNoDeepSupervision,
)
from nnunetv2.training.nnUNetTrainer.variants.training_length import nnUNetTrainer_Xepochs as schedules
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_attention.networks import build_gated_network, gates_by_level


class nnUNetTrainerAttention(nnUNetTrainer):
    """nnUNetTrainer whose network (PlainConvUNet or ResEnc, from the plans) has attention-gated skips: every skip
    but the full-resolution one, like the paper's code."""

    gate_init = "paper"
    gate_finest_skip = False

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> torch.nn.Module:
        return build_gated_network(configuration_manager, num_input_channels, num_output_channels,
                                   enable_deep_supervision, gate_init=cls.gate_init,
                                   gate_finest_skip=cls.gate_finest_skip)

    def initialize(self):
        super().initialize()
        gates = gates_by_level(self.network)
        gate_parameters = sum(p.numel() for gate in gates.values() for p in gate.parameters())
        self.print_to_log_file(f"Attention gates ({self.gate_init} init) on the skip connections of levels "
                               f"{sorted(gates)} (0 = full resolution), {gate_parameters} parameters.")


class nnUNetTrainerAttentionNoDeepSupervision(nnUNetTrainerAttention, nnUNetTrainerNoDeepSupervision):
    pass


class nnUNetTrainerAttention_1epoch(nnUNetTrainerAttention, schedules.nnUNetTrainer_1epoch):
    pass


class nnUNetTrainerAttention_5epochs(nnUNetTrainerAttention, schedules.nnUNetTrainer_5epochs):
    pass


class nnUNetTrainerAttention_10epochs(nnUNetTrainerAttention, schedules.nnUNetTrainer_10epochs):
    pass


class nnUNetTrainerAttention_20epochs(nnUNetTrainerAttention, schedules.nnUNetTrainer_20epochs):
    pass


class nnUNetTrainerAttention_50epochs(nnUNetTrainerAttention, schedules.nnUNetTrainer_50epochs):
    pass


class nnUNetTrainerAttention_100epochs(nnUNetTrainerAttention, schedules.nnUNetTrainer_100epochs):
    pass


class nnUNetTrainerAttention_250epochs(nnUNetTrainerAttention, schedules.nnUNetTrainer_250epochs):
    pass


class nnUNetTrainerAttention_500epochs(nnUNetTrainerAttention, schedules.nnUNetTrainer_500epochs):
    pass


class nnUNetTrainerAttention_750epochs(nnUNetTrainerAttention, schedules.nnUNetTrainer_750epochs):
    pass


class nnUNetTrainerAttention_2000epochs(nnUNetTrainerAttention, schedules.nnUNetTrainer_2000epochs):
    pass


class nnUNetTrainerAttention_4000epochs(nnUNetTrainerAttention, schedules.nnUNetTrainer_4000epochs):
    pass


class nnUNetTrainerAttention_8000epochs(nnUNetTrainerAttention, schedules.nnUNetTrainer_8000epochs):
    pass


class nnUNetTrainerAttentionIdentityInit(nnUNetTrainerAttention):
    """Gates that start as exact pass-throughs (see AttentionGate), for the ablation against the paper's init."""

    gate_init = "identity"


class nnUNetTrainerAttentionAllSkips(nnUNetTrainerAttention):
    """Gates the full-resolution skip too (the ablation; costs more than all other gates together)."""

    gate_finest_skip = True
