"""Test-only trainers, found by nnU-Net through nnUNet_extTrainer like any user's own trainer folder: short
schedules so that nnU-Net's real CLIs train, validate and predict in seconds on a CPU."""
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_attention.trainers import nnUNetTrainerAttention


class _Tiny:
    def _shorten(self):
        self.num_epochs = 2
        self.num_iterations_per_epoch = 3
        self.num_val_iterations_per_epoch = 1


class nnUNetTrainerAttentionTiny(nnUNetTrainerAttention, _Tiny):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._shorten()


class nnUNetTrainerTiny(nnUNetTrainer, _Tiny):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._shorten()


class nnUNetTrainerAttentionTinyFrozen(nnUNetTrainerAttentionTiny):
    """Learning rate 0: the trained weights are exactly the weights training started from."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 0.0


class nnUNetTrainerAttentionTinyResumable(nnUNetTrainerAttentionTiny):
    """More epochs, and checkpoint_latest.pth after every one: something to kill and resume with --c."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 5
        self.save_every = 1
