"""Trainers of the initialisation study (scripts/init_study.py): nnU-Net's trainer and our gated ones with the
study's schedule (NNUNET_ATTENTION_STUDY_EPOCHS epochs of NNUNET_ATTENTION_STUDY_ITERATIONS iterations, a checkpoint
after every epoch), a seed (NNUNET_ATTENTION_STUDY_SEED) for torch, numpy and random, set before the network is
built, and NNUNET_ATTENTION_STUDY_THREADS torch threads (two trainings share two cores without oversubscribing)."""
import os
import random

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_attention.trainers import (nnUNetTrainerAttention, nnUNetTrainerAttentionIdentityInit,
                                       nnUNetTrainerAttentionUniformInit)


class _StudySchedule:
    def initialize(self):
        if not self.was_initialized:  # the schedule must be set before nnU-Net builds its LR scheduler
            self.num_epochs = int(os.environ.get("NNUNET_ATTENTION_STUDY_EPOCHS", 4))
            self.num_iterations_per_epoch = int(os.environ.get("NNUNET_ATTENTION_STUDY_ITERATIONS", 250))
            self.num_val_iterations_per_epoch = int(os.environ.get("NNUNET_ATTENTION_STUDY_VAL_ITERATIONS", 50))
            self.save_every = 1
            if "NNUNET_ATTENTION_STUDY_THREADS" in os.environ:
                torch.set_num_threads(int(os.environ["NNUNET_ATTENTION_STUDY_THREADS"]))
            seed = int(os.environ.get("NNUNET_ATTENTION_STUDY_SEED", 0))
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        super().initialize()


class nnUNetTrainerStudy(_StudySchedule, nnUNetTrainer):
    pass


class nnUNetTrainerAttentionStudy(_StudySchedule, nnUNetTrainerAttention):
    pass


class nnUNetTrainerAttentionIdentityInitStudy(_StudySchedule, nnUNetTrainerAttentionIdentityInit):
    pass


class nnUNetTrainerAttentionUniformInitStudy(_StudySchedule, nnUNetTrainerAttentionUniformInit):
    pass
