"""Trainers of the demo's study (scripts/init_study.py): the demo's two trainers, unchanged but for a seed
(NNUNET_ATTENTION_STUDY_SEED) for torch, numpy and random, set before nnU-Net builds the network. nnU-Net's
augmentation workers stay unseeded, as in the demo."""
import os
import random

import numpy as np
import torch

from nnunet_attention.trainers import nnUNetTrainerAttentionDemo, nnUNetTrainerDemo


class _Seeded:
    def initialize(self):
        if not self.was_initialized:
            seed = int(os.environ.get("NNUNET_ATTENTION_STUDY_SEED", 0))
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        super().initialize()


class nnUNetTrainerDemoSeeded(_Seeded, nnUNetTrainerDemo):
    pass


class nnUNetTrainerAttentionDemoSeeded(_Seeded, nnUNetTrainerAttentionDemo):
    pass
