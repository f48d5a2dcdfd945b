"""nnU-Net trainers that train attention-gated networks; nnU-Net finds them through nnUNet_extTrainer (2.8 and
later) or the module ``nnunet-attention trainers --install`` puts into its trainer folder (2.5 to 2.7).

Each gate variant's schedule versions (``nnUNetTrainerAttention_1epoch`` ... ``_8000epochs``,
``nnUNetTrainerAttentionAllSkips_50epochs`` ...) are generated from nnU-Net's ``nnUNetTrainer_Xepochs`` module: the
variant composed with nnU-Net's class of that schedule. ``SCHEDULE_VERSIONS`` maps a trainer and a number of epochs
to its version, nnU-Net's own for nnUNetTrainer.
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
    validation_mirroring = False  # as the demo predicts on the CPU (--disable_tta): a quarter of the time


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


def _nnunet_schedules() -> Dict[int, type]:
    """epochs -> nnU-Net's trainer of that schedule (nnUNetTrainer_5epochs ...; nnUNetTrainer itself: 1000)."""
    found = {int(re.fullmatch(r"nnUNetTrainer_(\d+)epochs?", name).group(1)): obj
             for name, obj in vars(nnunet_schedules).items() if re.fullmatch(r"nnUNetTrainer_\d+epochs?", name)}
    return dict(sorted({1000: nnUNetTrainer, **found}.items()))


def _gate_variants() -> List[type]:
    """nnUNetTrainerAttention and each subclass here that differs from it only in its gates (``gates = ...``): the
    trainers whose ungated partner is nnUNetTrainer, so each pairs with nnU-Net's schedules."""
    return [nnUNetTrainerAttention] + [obj for obj in globals().values()
                                       if isinstance(obj, type) and obj.__bases__ == (nnUNetTrainerAttention,)
                                       and {key for key in vars(obj) if not key.startswith("__")} == {"gates"}]


def _schedule_version(variant: type, schedule: type) -> type:
    """variant on nnU-Net's schedule: the two composed, as nnU-Net composes its own schedule variants."""
    name = variant.__name__ + schedule.__name__[len("nnUNetTrainer"):]
    doc = f"{variant.__name__} on nnU-Net's {schedule.__name__} schedule."
    return type(name, (variant, schedule), {"__module__": __name__, "__qualname__": name, "__doc__": doc})


# trainer name -> epochs -> the name of its version on that schedule, for nnU-Net's nnUNetTrainer and every gate
# variant; the gated versions are generated here, one per (variant, schedule of nnU-Net's)
SCHEDULE_VERSIONS: Dict[str, Dict[int, str]] = {
    "nnUNetTrainer": {epochs: trainer.__name__ for epochs, trainer in _nnunet_schedules().items()}}
for _variant in _gate_variants():
    SCHEDULE_VERSIONS[_variant.__name__] = {1000: _variant.__name__}
    for _epochs, _schedule in _nnunet_schedules().items():
        if _schedule is not nnUNetTrainer:
            _version = _schedule_version(_variant, _schedule)
            globals()[_version.__name__] = _version
            SCHEDULE_VERSIONS[_variant.__name__][_epochs] = _version.__name__
del _variant, _epochs, _schedule, _version


def schedule_version(trainer: str, epochs: int) -> str:
    """The name of trainer's version on nnU-Net's schedule of that many epochs; a one-line error where there is none."""
    from nnunet_attention.errors import NnUNetAttentionError

    versions = SCHEDULE_VERSIONS.get(trainer)
    if versions is None:
        raise NnUNetAttentionError(f"--epochs: {trainer} has no schedule versions; those that have: "
                                   f"{', '.join(SCHEDULE_VERSIONS)} (or give -tr the trainers without --epochs)")
    if epochs not in versions:
        raise NnUNetAttentionError(f"--epochs must be one of nnU-Net's schedules {', '.join(map(str, versions))}; "
                                   f"got {epochs}")
    return versions[epochs]


def schedule_epochs(trainer: str) -> Optional[int]:
    """Epochs of a schedule version's (or nnU-Net's nnUNetTrainer's 1000); None for a trainer not among them."""
    return next((e for versions in SCHEDULE_VERSIONS.values() for e, name in versions.items() if name == trainer),
                None)


__all__ = trainer_names()  # what nnU-Net's search imports (ext_trainers): every trainer nnunet-attention lists
