"""Trainers of scripts/gpu_check.py: nnU-Net's trainer and our gated one on a short schedule set by the environment
(NNUNET_ATTENTION_EPOCHS epochs of NNUNET_ATTENTION_ITERATIONS iterations, NNUNET_ATTENTION_VAL_ITERATIONS
validation batches; with NNUNET_ATTENTION_MIRRORING=0 no mirroring when validating, as --quick predicts with
--disable_tta), everything else nnU-Net's defaults (on CUDA: torch.compile and AMP)."""
import os

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_attention.trainers import nnUNetTrainerAttention


class _Scheduled:
    def initialize(self):
        if not self.was_initialized:  # before nnU-Net builds its LR scheduler from num_epochs
            self.num_epochs = int(os.environ["NNUNET_ATTENTION_EPOCHS"])
            self.num_iterations_per_epoch = int(os.environ["NNUNET_ATTENTION_ITERATIONS"])
            self.num_val_iterations_per_epoch = int(os.environ["NNUNET_ATTENTION_VAL_ITERATIONS"])
        super().initialize()

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        configured = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if os.environ.get("NNUNET_ATTENTION_MIRRORING") == "0":  # kept in the checkpoint: --val validates alike
            self.inference_allowed_mirroring_axes = None
        return configured


class nnUNetTrainerScheduled(_Scheduled, nnUNetTrainer):
    pass


class nnUNetTrainerAttentionScheduled(_Scheduled, nnUNetTrainerAttention):
    pass

