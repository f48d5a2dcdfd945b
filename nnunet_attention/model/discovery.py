"""How nnU-Net's own commands find our trainers.

nnU-Net 2.8 and later: the ``nnunet_attention_discovery.pth`` file that installation puts into site-packages imports
this module at interpreter start, which adds our trainer folder to nnUNet_extTrainer, so nnU-Net's commands (and their
DDP workers) find our trainers with nothing set up. It must stay cheap: no torch here. Folders the user already
listed keep their place in front of ours.

nnU-Net 2.5 to 2.7 search only their own ``nnunetv2/training/nnUNetTrainer`` folder. ``nnunet-attention trainers
--install`` writes one module there (SHIM_NAME, a few lines that import our trainers) and ``--remove`` deletes it;
nothing else of nnU-Net's is touched, and no nnU-Net trainer changes. The module imports nothing once
nnunet-attention is uninstalled (nnU-Net then behaves as before it was written); reinstalling nnunetv2 into a fresh
folder drops it (run --install again).
"""
import importlib.util
import os

TRAINER_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ext_trainers")


def register_trainer_folder(environ=os.environ) -> None:
    listed = [p for p in environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if TRAINER_FOLDER not in listed:
        environ["nnUNet_extTrainer"] = os.pathsep.join(listed + [TRAINER_FOLDER])


SHIM_NAME = "nnunet_attention_trainers.py"
SHIM_MARK = "# written by nnunet-attention trainers --install"
SHIM = f"""{SHIM_MARK}; nnunet-attention trainers --remove deletes it.
# nnU-Net before 2.8 finds trainers only in this folder: this module hands it nnunet-attention's (the same classes
# as nnunet_attention.model.trainers). nnU-Net imports every module here when it searches a trainer, so nothing may
# fail here: uninstalled, nnunet-attention adds nothing; unable to load (another nnU-Net version), it says why in one
# line and adds nothing, and nnU-Net's own trainers are found as before.
try:
    from nnunet_attention.model.trainers import *  # noqa: F401,F403
except ModuleNotFoundError as missing:
    if missing.name is None or not missing.name.startswith("nnunet_attention"):
        import sys
        print(f"nnunet-attention's trainers not loaded: {{missing}}", file=sys.stderr)
except Exception as error:
    import sys
    print(f"nnunet-attention's trainers not loaded: {{error}}", file=sys.stderr)
"""


def nnunet_trainer_folder() -> str:
    """nnU-Net's own trainer folder (nnunetv2/training/nnUNetTrainer), found without importing nnU-Net."""
    spec = importlib.util.find_spec("nnunetv2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nnunetv2 is not installed in this environment")
    return os.path.join(list(spec.submodule_search_locations)[0], "training", "nnUNetTrainer")


def shim_path() -> str:
    return os.path.join(nnunet_trainer_folder(), SHIM_NAME)


def install_shim() -> str:
    """Writes (or rewrites) our module into nnU-Net's trainer folder; returns its path."""
    path = shim_path()
    if os.path.exists(path) and not _is_ours(path):
        raise FileExistsError(f"{path} exists and was not written by nnunet-attention; it is left as it is")
    with open(path, "w") as f:
        f.write(SHIM)
    return path


def remove_shim() -> str:
    """Deletes our module from nnU-Net's trainer folder (a file we did not write is left); returns its path."""
    path = shim_path()
    if os.path.exists(path):
        if not _is_ours(path):
            raise FileExistsError(f"{path} was not written by nnunet-attention; it is left as it is")
        os.remove(path)
    return path


def _is_ours(path: str) -> bool:
    with open(path) as f:
        return f.readline().startswith(SHIM_MARK)


register_trainer_folder()
