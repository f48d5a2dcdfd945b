"""Turns a trained ungated nnU-Net model into a gated one that computes exactly what the ungated one computes.

Every weight is copied; the gates get the identity parameterisation (see AttentionGate), so the gated network's
outputs equal the ungated network's at step 0 while all gate parameters receive gradient.
"""
import json
import os
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch import nn

from nnunet_attention.nnunet_api import build_network
from nnunet_attention.model.checkpoint import load_checkpoint
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.files import atomic_path
from nnunet_attention.model.networks import gates_by_level


def retrofit_network(plain: nn.Module, gated: nn.Module) -> nn.Module:
    """Copies every weight of plain into gated and makes every gate an exact pass-through."""
    missing, unexpected = gated.load_state_dict(plain.state_dict(), strict=False)
    if unexpected or any(".attention_gates." not in k for k in missing):
        raise NnUNetAttentionError(f"the gated network does not match the ungated one (missing {missing[:3]}, "
                                   f"unexpected {unexpected[:3]})")
    for gate in gates_by_level(gated).values():
        gate.make_identity()
    return gated


def _plans_and_configuration(checkpoint: dict, checkpoint_file: str):
    """The plans and configuration the checkpoint was trained with, checked against its model folder's plans.json."""
    init_args = checkpoint.get("init_args") or {}
    model_folder = os.path.dirname(os.path.dirname(os.path.abspath(checkpoint_file)))
    folder_plans_file = os.path.join(model_folder, "plans.json")
    folder_plans = None
    if os.path.isfile(folder_plans_file):
        with open(folder_plans_file) as f:
            folder_plans = json.load(f)
    plans = init_args.get("plans") or folder_plans
    configuration = init_args.get("configuration") or model_folder.rsplit("__", 1)[-1]
    dataset_json = init_args.get("dataset_json")
    if dataset_json is None and os.path.isfile(os.path.join(model_folder, "dataset.json")):
        with open(os.path.join(model_folder, "dataset.json")) as f:
            dataset_json = json.load(f)
    if plans is None or dataset_json is None or configuration not in plans.get("configurations", {}):
        raise NnUNetAttentionError(f"cannot find the plans/configuration/dataset.json this checkpoint was trained "
                                   f"with (not in the checkpoint, not in {model_folder}); retrofit a checkpoint "
                                   f"inside its nnU-Net model folder")
    if folder_plans is not None and plans is not folder_plans:
        ours = PlansManager(plans).get_configuration(configuration).configuration.get("architecture")
        theirs = (PlansManager(folder_plans).get_configuration(configuration).configuration.get("architecture")
                  if configuration in folder_plans.get("configurations", {}) else None)
        if ours != theirs:
            raise NnUNetAttentionError(f"the checkpoint's plans do not match {folder_plans_file} for configuration "
                                       f"'{configuration}'; pass the checkpoint from the model folder it was "
                                       f"trained in")
    return plans, configuration, dataset_json


def retrofit_checkpoint(checkpoint_file: str, output_file: str, trainer_name: str = "nnUNetTrainerAttention",
                        trust_checkpoint: bool = False, overwrite: bool = False) -> dict:
    """Writes output_file for nnUNetv2_train -tr trainer_name -pretrained_weights (through a temporary file moved
    into place, so a failure leaves nothing half-written); returns a summary."""
    from nnunet_attention.files import check_output_file
    from nnunet_attention.model.trainers import gated_trainer_class

    if not os.path.isfile(checkpoint_file):
        raise NnUNetAttentionError(f"checkpoint not found: {checkpoint_file}")
    if not os.path.isdir(os.path.dirname(os.path.abspath(output_file))):
        raise NnUNetAttentionError(f"output folder does not exist: {os.path.dirname(os.path.abspath(output_file))}")
    check_output_file(output_file, [checkpoint_file], overwrite)
    checkpoint = load_checkpoint(checkpoint_file, trust=trust_checkpoint)
    weights = checkpoint["network_weights"]
    if any(".attention_gates." in k for k in weights):
        raise NnUNetAttentionError(f"{checkpoint_file} is already gated (it has attention_gates weights); use it "
                                   f"directly with -pretrained_weights")
    plans, configuration, dataset_json = _plans_and_configuration(checkpoint, checkpoint_file)
    trainer_class = gated_trainer_class(trainer_name)
    if trainer_class.gates.output_transform:
        raise NnUNetAttentionError(f"-tr {trainer_name} has gate output transforms, which cannot start as an exact "
                                   f"pass-through; retrofit for a trainer without them (e.g. nnUNetTrainerAttention)")

    plans_manager = PlansManager(plans)
    configuration_manager = plans_manager.get_configuration(configuration)
    num_inputs = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    num_outputs = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    gated = build_network(trainer_class, plans_manager, configuration_manager, num_inputs, num_outputs, True)
    plain = get_network_from_plans(configuration_manager.network_arch_class_name,
                                   configuration_manager.network_arch_init_kwargs,
                                   configuration_manager.network_arch_init_kwargs_req_import, num_inputs, num_outputs,
                                   allow_init=False, deep_supervision=True)
    try:
        plain.load_state_dict(weights)
    except RuntimeError as e:
        raise NnUNetAttentionError(f"the checkpoint's weights do not match its plans' configuration '{configuration}' "
                                   f"({str(e).splitlines()[0]})") from None
    retrofit_network(plain, gated)
    init_args = {k: v for k, v in (checkpoint.get("init_args") or {}).items() if k != "device"}
    init_args.update(plans=plans, configuration=configuration, dataset_json=dataset_json)
    with atomic_path(output_file) as partial:
        torch.save({"network_weights": gated.state_dict(), "trainer_name": trainer_name, "init_args": init_args,
                    "retrofitted_from": os.path.abspath(checkpoint_file)}, partial)
    return {"configuration": configuration, "gates": len(gates_by_level(gated)), "trainer": trainer_name,
            "copied_tensors": len(weights)}
