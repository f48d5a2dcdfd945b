"""Reading nnU-Net checkpoints without running code from them.

nnU-Net itself loads checkpoints with ``torch.load(weights_only=False)``, which unpickles (and so runs) whatever the
file holds. We load with ``weights_only=True`` and an explicit allow-list of what nnU-Net checkpoints legitimately
hold besides tensors and plain containers: the numpy scalar types and dtypes in the training logging. Anything else
is refused with the file and the foreign type named; only ``trust=True`` (the CLI's ``--trust-checkpoint``) loads it.
"""
import pickle
import re

import numpy as np
import torch

from nnunet_attention.errors import NnUNetAttentionError

_NUMPY_CORE = getattr(np, "_core", None) or np.core  # numpy 2 renamed np.core
_NUMPY_GLOBALS = [np.dtype, _NUMPY_CORE.multiarray.scalar, _NUMPY_CORE.multiarray._reconstruct, np.ndarray] + [
    type(np.dtype(t)) for t in ("float32", "float64", "int64", "int32", "bool")]
TRUST_HINT = ("pass --trust-checkpoint only if you trust where the file comes from (loading it can run code "
              "stored in it)")


def _foreign_type(error: Exception) -> str:
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return found.group(1) if found else "an object of a type nnU-Net checkpoints do not hold"


def load_checkpoint(path: str, map_location="cpu", mmap: bool = False, trust: bool = False) -> dict:
    """The checkpoint's dict, read with weights_only=True and the allow-list above (unless trust); mmap=True leaves
    the weights on disk until touched. Raises NnUNetAttentionError (one line)."""
    try:
        if trust:
            checkpoint = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
        else:
            with torch.serialization.safe_globals(_NUMPY_GLOBALS):
                checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):
            raise NnUNetAttentionError(f"{path} holds {_foreign_type(e)}, which is not part of an nnU-Net "
                                       f"checkpoint; refused without running it; {TRUST_HINT}") from None
        raise NnUNetAttentionError(f"{path} is not a readable nnU-Net checkpoint (UnpicklingError)") from None
    except Exception as e:
        raise NnUNetAttentionError(f"{path} is not a readable nnU-Net checkpoint ({type(e).__name__}: "
                                  f"{(str(e).splitlines() or [''])[0][:200]})") from None
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise NnUNetAttentionError(f"{path} is not an nnU-Net checkpoint (no 'network_weights'); pass a "
                                  f"checkpoint_final.pth or checkpoint_best.pth from nnUNet_results")
    return checkpoint
