"""What nnU-Net imports (as a top-level module) when it searches nnUNet_extTrainer: our trainers, re-exported, so
the classes nnU-Net finds are the package's own and a user's subclass of them is the same class."""
from nnunet_attention.model.trainers import *  # noqa: F401,F403
