"""nnU-Net trainers that train attention-gated networks; nnU-Net finds them through nnUNet_extTrainer (2.8 and
later) or the module ``nnunet-attention trainers --install`` puts into its trainer folder (2.5 to 2.7).

The schedule variants (``nnUNetTrainerAttention_1epoch`` ... ``_8000epochs``) are written out, one class each
composing nnU-Net's class of the same schedule, as nnU-Net writes its own; a test keeps them equal to nnU-Net's
``nnUNetTrainer_Xepochs`` module. ``SCHEDULES`` maps epochs to the (ungated, gated) trainer names that pair up.
"""
import os
import re
from typing import Dict, List, Optional, Tuple

import torch

from nnunet_attention.nnunet_api import check_nnunet_version, network_builder

check_nnunet_version()  # before anything of nnU-Net's that differs between versions is imported

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: E402
from nnunetv2.training.nnUNetTrainer.variants.network_architecture.nnUNetTrainerNoDeepSupervision import (  # noqa: E402
    nnUNetTrainerNoDeepSupervision,
)
from nnunetv2.training.nnUNetTrainer.variants.training_length import (  # noqa: E402
    nnUNetTrainer_Xepochs as nnunet_schedules,
)

from nnunet_attention.model.gate_config import GateConfig  # noqa: E402
from nnunet_attention.model.networks import build_gated_network, gates_by_level  # noqa: E402

_OLD_GATE_ATTRIBUTES = ("gate_init", "gate_finest_skip", "gate_output_transform")


def _build_with_gates(cls, architecture, num_input_channels: int, num_output_channels: int,
                      enable_deep_supervision: bool = True) -> torch.nn.Module:
    """The plans' U-Net (PlainConvUNet or ResEnc) with the trainer class's gates (cls.gates)."""
    return build_gated_network(architecture, num_input_channels, num_output_channels, enable_deep_supervision,
                               gates=cls.gates)


class nnUNetTrainerAttention(nnUNetTrainer):
    """nnUNetTrainer whose network (PlainConvUNet or ResEnc, from the plans) has attention-gated skips: every skip
    but the full-resolution one, like the paper's code. A variant sets ``gates`` to another GateConfig."""

    gates = GateConfig()

    def __init_subclass__(cls, **kwargs):
        """A subclass that sets an attribute this class does not read would train other gates than it says."""
        super().__init_subclass__(**kwargs)
        stale = [name for name in _OLD_GATE_ATTRIBUTES if name in vars(cls)]
        if stale:
            raise TypeError(f"{cls.__name__} sets {', '.join(stale)}, which nnUNetTrainerAttention does not read; set "
                            f"gates = GateConfig(...) from nnunet_attention.model.gate_config instead")

    build_network_architecture = network_builder(_build_with_gates)

    def initialize(self):
        super().initialize()
        gates = gates_by_level(self.network)
        gate_parameters = sum(p.numel() for gate in gates.values() for p in gate.parameters())
        self.print_to_log_file(f"Attention gates ({self.gates.describe()}) on the skip connections of levels "
                               f"{sorted(gates)} (0 = full resolution), {gate_parameters} parameters.")


class nnUNetTrainerAttentionNoDeepSupervision(nnUNetTrainerAttention, nnUNetTrainerNoDeepSupervision):
    pass


class nnUNetTrainerAttentionIdentityInit(nnUNetTrainerAttention):
    """Gates that start as exact pass-throughs (see AttentionGate), for the ablation against the paper's init."""

    gates = GateConfig(init="identity")


class nnUNetTrainerAttentionUniformInit(nnUNetTrainerAttention):
    """Gates that start at the same alpha = sigmoid(3) everywhere (psi's weights zero), for the initialisation study."""

    gates = GateConfig(init="uniform")


class nnUNetTrainerAttentionAllSkips(nnUNetTrainerAttention):
    """Gates the full-resolution skip too (the ablation; costs more than all other gates together)."""

    gates = GateConfig(levels="all")


class nnUNetTrainerAttentionOutputTransform(nnUNetTrainerAttention):
    """The authors' gate in full: x * alpha goes through W (1x1 conv + the plan's norm) before the concatenation."""

    gates = GateConfig(output_transform=True)


class ShortSchedule:
    """Mixin (listed before the trainer) for a short schedule given as data: ``schedule`` = (epochs, iterations per
    epoch, validation batches per epoch), set before nnU-Net builds its learning-rate schedule; ``cpu_share`` = how
    many trainings share the CPU (-device cpu: torch threads = cores // cpu_share; None: nnU-Net's all cores);
    ``validation_mirroring`` False validates without mirroring (kept in the checkpoint, so --val and predict do the
    same); ``checkpoint_every`` epochs between checkpoint_latest.pth (None: nnU-Net's 50). The demo's trainers, the
    tests' and scripts/gpu_check.py's are this mixin with other numbers."""

    schedule: Tuple[int, int, int] = (1000, 250, 50)
    cpu_share: Optional[int] = None
    validation_mirroring: bool = True
    checkpoint_every: Optional[int] = None

    def initialize(self):
        if not self.was_initialized:
            self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = self.schedule
            if self.checkpoint_every:
                self.save_every = self.checkpoint_every
            if self.cpu_share and self.device.type == "cpu":
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.cpu_share))
        super().initialize()

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        configured = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if not self.validation_mirroring:
            self.inference_allowed_mirroring_axes = None
        return configured


class nnUNetTrainerDemo(ShortSchedule, nnUNetTrainer):
    """nnU-Net's trainer on the demo's short schedule (docs/demo.md): 5 epochs of 50 iterations, 5 validation
    batches per epoch. nnU-Net ships no schedule this short with more than one epoch, and one epoch draws no
    learning curve. On the CPU it takes half the cores, because the demo trains two at a time."""

    schedule = (5, 50, 5)
    cpu_share = 2


class nnUNetTrainerAttentionDemo(nnUNetTrainerAttention, nnUNetTrainerDemo):
    """nnUNetTrainerAttention on the demo's schedule (nnUNetTrainerDemo)."""


def trainer_names() -> List[str]:
    """The names of the trainers this module defines (what nnunet-attention trainers lists)."""
    return sorted(name for name, obj in globals().items()
                  if isinstance(obj, type) and issubclass(obj, nnUNetTrainer) and obj.__module__ == __name__)


def gated_trainer_class(name: str) -> type:
    """The trainer nnU-Net finds for -tr name (a user's own subclass too); a one-line error unless it is gated."""
    from nnunet_attention.errors import NnUNetAttentionError
    from nnunet_attention.nnunet_api import find_trainer_class

    trainer_class = find_trainer_class(name)
    if not issubclass(trainer_class, nnUNetTrainerAttention):
        raise NnUNetAttentionError(f"-tr {name} is not a gated trainer (not a subclass of nnUNetTrainerAttention); "
                                   f"see nnunet-attention trainers")
    return trainer_class


class nnUNetTrainerAttention_1epoch(nnUNetTrainerAttention, nnunet_schedules.nnUNetTrainer_1epoch):
    """nnUNetTrainerAttention on nnU-Net's nnUNetTrainer_1epoch schedule (as are the variants below)."""


class nnUNetTrainerAttention_5epochs(nnUNetTrainerAttention, nnunet_schedules.nnUNetTrainer_5epochs):
    pass


class nnUNetTrainerAttention_10epochs(nnUNetTrainerAttention, nnunet_schedules.nnUNetTrainer_10epochs):
    pass


class nnUNetTrainerAttention_20epochs(nnUNetTrainerAttention, nnunet_schedules.nnUNetTrainer_20epochs):
    pass


class nnUNetTrainerAttention_50epochs(nnUNetTrainerAttention, nnunet_schedules.nnUNetTrainer_50epochs):
    pass


class nnUNetTrainerAttention_100epochs(nnUNetTrainerAttention, nnunet_schedules.nnUNetTrainer_100epochs):
    pass


class nnUNetTrainerAttention_250epochs(nnUNetTrainerAttention, nnunet_schedules.nnUNetTrainer_250epochs):
    pass


class nnUNetTrainerAttention_500epochs(nnUNetTrainerAttention, nnunet_schedules.nnUNetTrainer_500epochs):
    pass


class nnUNetTrainerAttention_750epochs(nnUNetTrainerAttention, nnunet_schedules.nnUNetTrainer_750epochs):
    pass


class nnUNetTrainerAttention_2000epochs(nnUNetTrainerAttention, nnunet_schedules.nnUNetTrainer_2000epochs):
    pass


class nnUNetTrainerAttention_4000epochs(nnUNetTrainerAttention, nnunet_schedules.nnUNetTrainer_4000epochs):
    pass


class nnUNetTrainerAttention_8000epochs(nnUNetTrainerAttention, nnunet_schedules.nnUNetTrainer_8000epochs):
    pass


# epochs -> (ungated, gated) trainer names that pair up: nnU-Net's default and every variant above
# (tests/test_hooks_and_design.py keeps the list equal to nnU-Net's nnUNetTrainer_Xepochs module)
SCHEDULES: Dict[int, Tuple[str, str]] = dict(sorted(
    [(1000, ("nnUNetTrainer", "nnUNetTrainerAttention"))] +
    [(int(re.search(r"_(\d+)epochs?$", name).group(1)), (name.replace("Attention", ""), name))
     for name in list(globals()) if re.fullmatch(r"nnUNetTrainerAttention_\d+epochs?", name)]))

__all__ = trainer_names()  # what nnU-Net's search imports (ext_trainers): every trainer nnunet-attention lists
