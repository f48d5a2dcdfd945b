"""Trainers of scripts/gpu_check.py: nnU-Net's trainer and our gated one on a short schedule (ShortSchedule) whose
numbers come from the environment (NNUNET_ATTENTION_EPOCHS epochs of NNUNET_ATTENTION_ITERATIONS iterations,
NNUNET_ATTENTION_VAL_ITERATIONS validation batches; with NNUNET_ATTENTION_MIRRORING=0 no mirroring when validating,
as --quick predicts with --disable_tta; with NNUNET_ATTENTION_FINAL_VALIDATION=0 a training ends without nnU-Net's
final validation, which `nnUNetv2_train --val` (grid) runs later; on the CPU, NNUNET_ATTENTION_CPU_SHARE trainings
or test workers share the cores, as ShortSchedule.cpu_share), everything else nnU-Net's defaults (on CUDA:
torch.compile and AMP)."""
import os

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_attention.model.trainers import ShortSchedule, nnUNetTrainerAttention


class _FromEnvironment(ShortSchedule):
    @property
    def schedule(self):
        return tuple(int(os.environ[f"NNUNET_ATTENTION_{name}"]) for name in ("EPOCHS", "ITERATIONS", "VAL_ITERATIONS"))

    @property
    def validation_mirroring(self):
        return os.environ.get("NNUNET_ATTENTION_MIRRORING") != "0"

    def on_train_end(self):
        super().on_train_end()
        self.trained_in_this_process = True

    def perform_actual_validation(self, save_probabilities: bool = False):
        if getattr(self, "trained_in_this_process", False) and \
                os.environ.get("NNUNET_ATTENTION_FINAL_VALIDATION") == "0":
            self.print_to_log_file("Final validation left to nnUNetv2_train --val "
                                   "(NNUNET_ATTENTION_FINAL_VALIDATION=0)")
            return
        super().perform_actual_validation(save_probabilities)

    @property
    def cpu_share(self):
        share = os.environ.get("NNUNET_ATTENTION_CPU_SHARE")
        return int(share) if share else None


class nnUNetTrainerScheduled(_FromEnvironment, nnUNetTrainer):
    pass


class nnUNetTrainerAttentionScheduled(_FromEnvironment, nnUNetTrainerAttention):
    pass
