"""Public import path of nnunet_attention.model.networks, kept for users' own code (trainers subclass from here; docs
name it): this name is the same module object, so its classes are the ones nnU-Net finds."""
import sys

from nnunet_attention.model import networks

sys.modules[__name__] = networks
