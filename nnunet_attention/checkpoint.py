"""Reading nnU-Net checkpoints without unpickling arbitrary objects."""
import numpy as np
import torch

# nnU-Net's checkpoints hold numpy scalars in their logging; nothing else outside torch's safe set.
_NUMPY_CORE = getattr(np, "_core", None) or np.core  # numpy 2 renamed np.core
_NUMPY_GLOBALS = [np.dtype, _NUMPY_CORE.multiarray.scalar] + [type(np.dtype(t)) for t in
                                                             ("float32", "float64", "int64", "int32", "bool")]


class NotACheckpointError(ValueError):
    pass


def load_checkpoint(path: str, map_location="cpu", mmap: bool = False) -> dict:
    """torch.load(weights_only=True), allowing just the numpy types nnU-Net writes; refuses anything else.
    mmap=True leaves the weights on disk until touched."""
    try:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:
        raise NotACheckpointError(f"{path} is not a readable nnU-Net checkpoint ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:200]})") from None
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise NotACheckpointError(f"{path} is not an nnU-Net checkpoint (no 'network_weights'); pass a "
                                  f"checkpoint_final.pth or checkpoint_best.pth from nnUNet_results")
    return checkpoint
