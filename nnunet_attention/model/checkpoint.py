"""Reading nnU-Net checkpoints without running code from them.

nnU-Net itself loads checkpoints with ``torch.load(weights_only=False)``, which unpickles (and so runs) whatever the
file holds. We load with ``weights_only=True`` and an explicit allow-list of what nnU-Net checkpoints legitimately
hold besides tensors and plain containers: the numpy scalar types and dtypes in the training logging. Anything else
is refused with the file and the foreign type named; only ``trust=True`` (the CLI's ``--trust-checkpoint``) loads it.
"""
import os
import pickle
import re
from typing import List, Optional

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

UNREADABLE = ("{path} is not a readable nnU-Net checkpoint (damaged or not a torch file); restore it, or delete it "
              "and train that fold again")


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
        raise NnUNetAttentionError(UNREADABLE.format(path=path)) from None
    except PermissionError:
        raise NnUNetAttentionError(f"cannot read {path}: permission denied; make it readable (chmod u+r) and run "
                                   f"again") from None
    except FileNotFoundError:
        raise NnUNetAttentionError(f"{path} does not exist") from None
    except Exception:
        raise NnUNetAttentionError(UNREADABLE.format(path=path)) from None
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise NnUNetAttentionError(f"{path} is not an nnU-Net checkpoint (no 'network_weights'); pass a "
                                  f"checkpoint_final.pth or checkpoint_best.pth from nnUNet_results")
    return checkpoint


def checkpoints_nnunet_loads(fold_folder: str, continue_training: bool = False, validation_only: bool = False,
                             pretrained_weights: Optional[str] = None) -> List[str]:
    """The files nnU-Net's maybe_load_checkpoint (nnunetv2.run.run_training, 2.5.2 to 2.8.1, read side by side)
    unpickles for nnUNetv2_train with these flags: --c the first of checkpoint_final, _latest, _best that exists;
    --val checkpoint_final; -pretrained_weights that file."""
    files = [pretrained_weights] if pretrained_weights else []
    if continue_training:
        names = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")
        files += [next((os.path.join(fold_folder, n) for n in names if os.path.isfile(os.path.join(fold_folder, n))),
                       None)]
    elif validation_only:
        files.append(os.path.join(fold_folder, "checkpoint_final.pth"))
    return [f for f in files if f and os.path.exists(f)]


def check_before_nnunet_loads(fold_folder: str, continue_training: bool = False, validation_only: bool = False,
                              pretrained_weights: Optional[str] = None, trust: bool = False):
    """Reads every checkpoint nnU-Net is about to unpickle (which runs code stored in it) with the safe loader
    first: a file that holds anything but tensors and nnU-Net's plain types is a one-line error naming it, unless
    trust (--trust-checkpoint)."""
    if trust:
        return
    for path in checkpoints_nnunet_loads(fold_folder, continue_training, validation_only, pretrained_weights):
        load_checkpoint(path, mmap=True)
