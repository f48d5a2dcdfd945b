"""Registers our trainer folder in nnUNet_extTrainer at interpreter start.

Imported by the ``nnunet_attention_discovery.pth`` file that installation puts into site-packages, so that nnU-Net's
own commands (and their DDP workers) find our trainers with nothing set up. It must stay cheap: no torch here.
Folders the user already listed keep their place in front of ours.
"""
import os

TRAINER_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ext_trainers")


def register_trainer_folder(environ=os.environ) -> None:
    listed = [p for p in environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if TRAINER_FOLDER not in listed:
        environ["nnUNet_extTrainer"] = os.pathsep.join(listed + [TRAINER_FOLDER])


register_trainer_folder()
