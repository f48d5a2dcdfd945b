"""The one place that decides the torch device a command runs on."""
from typing import Optional

from nnunet_attention.errors import NnUNetAttentionError


def resolve_device(requested: Optional[str]) -> str:
    """requested ("cpu" / "cuda"), or cuda when available and nothing was asked for; cuda without a CUDA device is a
    one-line error."""
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise NnUNetAttentionError("-device cuda asked for, but torch sees no CUDA device; use -device cpu")
    return requested
