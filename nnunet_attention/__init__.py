"""Attention-gated U-Nets for nnU-Net v2. Kept import-light: it runs at every interpreter start
(see model/discovery.py)."""
__version__ = "0.1.0"

from nnunet_attention.model.discovery import TRAINER_FOLDER, register_trainer_folder  # noqa: E402  (os only)

__all__ = ["TRAINER_FOLDER", "register_trainer_folder", "__version__"]
