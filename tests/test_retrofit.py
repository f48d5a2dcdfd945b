"""Retrofitting ungated models: exact outputs at step 0, gradients into the gates, nnU-Net accepts the file."""
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import SMALL_INPUT, TINY_TRAINERS, cli_in_process, fold_dir, plan_cases, private_copy, train
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from nnunet_attention.nnunet_api import build_network
from nnunet_attention.model.networks import gates_by_level
from nnunet_attention.tools.reference_plans import reference_configurations
from nnunet_attention.tools.retrofit import retrofit_network
from nnunet_attention.model.trainers import nnUNetTrainerAttention

UNGATED, GATED = TINY_TRAINERS
CLI = [sys.executable, "-m", "nnunet_attention.cli", "retrofit"]


@pytest.mark.parametrize("name", plan_cases(["hippocampus_3d_fullres", "pancreas_2d", "pancreas_resenc_m_3d_fullres"]))
def test_retrofitted_network_reproduces_the_ungated_one_and_learns(name):
    cm = ConfigurationManager(reference_configurations()[name])
    torch.manual_seed(0)
    plain = build_network(nnUNetTrainer, None, cm, 1, 3, True)
    gated = retrofit_network(plain, build_network(nnUNetTrainerAttention, None, cm, 1, 3, True))
    x = torch.randn(2, 1, *SMALL_INPUT[name])
    with torch.no_grad():
        expected = plain(x)
    outputs = gated(x)
    assert len(outputs) == len(expected)
    for a, b in zip(outputs, expected):
        assert (a - b).abs().max().item() <= 1e-5
    sum((o * torch.randn_like(o)).sum() for o in outputs).backward()
    for gate in gates_by_level(gated).values():
        for p_name, p in gate.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, p_name


@pytest.mark.slow
def test_retrofit_cli_output_starts_nnunet_training(trained_models, tmp_path):
    """Also the warm start of a gated trainer through nnU-Net's -pretrained_weights (trained on a private copy)."""
    source = fold_dir(trained_models[0], UNGATED, "3d_fullres", 0) / "checkpoint_final.pth"
    root, env = private_copy(trained_models[0], tmp_path / "copy")
    out = tmp_path / "retrofitted.pth"
    result = subprocess.run([*CLI, "-i", str(source), "-o", str(out), "-tr", "nnUNetTrainerAttentionTinyFrozen"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    retrofitted = torch.load(out, map_location="cpu", weights_only=True)["network_weights"]
    original = torch.load(source, map_location="cpu", weights_only=False)["network_weights"]
    assert all(torch.equal(retrofitted[k], v) for k, v in original.items())
    assert all(retrofitted[k].item() == 2.0 for k in retrofitted if k.endswith(".gain"))

    result = train(env, "nnUNetTrainerAttentionTinyFrozen", "3d_fullres", 3, "-pretrained_weights", str(out))
    assert "Loading pretrained weights from file" in result.stdout
    trained = torch.load(fold_dir(root, "nnUNetTrainerAttentionTinyFrozen", "3d_fullres", 3) / "checkpoint_final.pth",
                         map_location="cpu", weights_only=False)["network_weights"]
    # nnU-Net's -pretrained_weights loads every key but the 1x1 segmentation heads ('.seg_layers.', by its design)
    for key, value in retrofitted.items():
        if ".seg_layers." not in key:
            assert torch.equal(trained[key], value), key


@pytest.mark.slow
def test_retrofit_refuses_bad_inputs(trained_models, tmp_path, capsys, monkeypatch):
    root, env = trained_models

    def _refused(env, source, tmp_path, *extra):
        status, err = cli_in_process(capsys, "retrofit", "-i", source, "-o", tmp_path / "out.pth", *extra,
                                     monkeypatch=monkeypatch, env=env)
        assert status == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "out.pth").exists()
        return err

    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("hello")
    assert "not a readable nnU-Net checkpoint" in _refused(env, not_a_checkpoint, tmp_path)

    gated = fold_dir(root, GATED, "3d_fullres", 0) / "checkpoint_final.pth"
    assert "already gated" in _refused(env, gated, tmp_path)

    ungated = fold_dir(root, UNGATED, "3d_fullres", 0) / "checkpoint_final.pth"
    assert "not a gated trainer" in _refused(env, ungated, tmp_path, "-tr", "nnUNetTrainer")

    checkpoint = torch.load(ungated, map_location="cpu", weights_only=False)
    del checkpoint["init_args"]
    orphan = tmp_path / "loose" / "fold_0" / "checkpoint_final.pth"
    orphan.parent.mkdir(parents=True)
    torch.save(checkpoint, orphan)
    assert "cannot find the plans" in _refused(env, orphan, tmp_path)

    checkpoint = torch.load(ungated, map_location="cpu", weights_only=False)
    checkpoint["init_args"].pop("device")
    architecture = checkpoint["init_args"]["plans"]["configurations"]["3d_fullres"]["architecture"]
    architecture["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualUNet"
    moved = tmp_path / "moved" / "fold_0" / "checkpoint_final.pth"
    moved.parent.mkdir(parents=True)
    torch.save(checkpoint, moved)
    assert "ResidualUNet" in _refused(env, moved, tmp_path)

    shutil.copy(fold_dir(root, UNGATED, "3d_fullres", 0).parent / "plans.json", moved.parent.parent / "plans.json")
    assert "do not match" in _refused(env, moved, tmp_path)
