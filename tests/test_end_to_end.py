"""The gated trainers through nnU-Net's own CLIs on a tiny generated anisotropic 3D task, on the CPU."""
import glob
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers import DATASET_ID, DATASET_NAME, fold_dir, private_copy, run, train

pytestmark = pytest.mark.slow  # plans, preprocesses or trains through nnU-Net's CLIs

TRAINER = "nnUNetTrainerAttentionTiny"


def test_trained_gated_model_predicts_in_the_inputs_geometry(trained_models, gated_predictions):
    root, _ = trained_models
    trained = fold_dir(root, TRAINER, "3d_fullres", 0)
    log = open(glob.glob(str(trained / "training_log_*.txt"))[0]).read()
    assert "Attention gates (paper init) on the skip connections of levels [1, 2]" in log

    checkpoint = torch.load(trained / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == TRAINER
    gate_keys = [k for k in checkpoint["network_weights"] if ".attention_gates." in k]
    assert any(k.endswith("theta.weight") for k in gate_keys) and any(k.endswith("psi.weight") for k in gate_keys)

    images, predictions = gated_predictions  # nnUNetv2_predict of this trainer's folds 0 and 1
    inputs = sorted(images.glob("*_0000.nii.gz"))
    assert len(inputs) == 2
    for image_file in inputs:
        image = sitk.ReadImage(str(image_file))
        prediction = sitk.ReadImage(str(predictions / image_file.name.replace("_0000", "")))
        assert prediction.GetSize() == image.GetSize()
        np.testing.assert_allclose(prediction.GetSpacing(), image.GetSpacing(), rtol=1e-6)
        np.testing.assert_allclose(prediction.GetOrigin(), image.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(prediction.GetDirection(), image.GetDirection(), atol=1e-6)
        assert set(np.unique(sitk.GetArrayFromImage(prediction))) <= {0, 1, 2}


def test_train_2d_configuration(preprocessed_task, tmp_path):
    root, env = private_copy(preprocessed_task[0], tmp_path)
    train(env, TRAINER, "2d", 0)
    trained = fold_dir(root, TRAINER, "2d", 0)
    checkpoint = torch.load(trained / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    theta = [v for k, v in checkpoint["network_weights"].items() if k.endswith("theta.weight")]
    assert theta and all(t.dim() == 4 for t in theta)
    assert (trained / "validation" / "summary.json").is_file()


def test_lowres_and_cascade_configurations(preprocessed_task, tmp_path):
    """The planner drops 3d_lowres for images this small, so the plans get the two configurations nnU-Net writes
    for large images (same inheritance), then both train through the CLI: lowres on fold 'all' exports the
    next-stage segmentations that the cascade reads as extra input channels (on a copy: the plans change)."""
    root, env = private_copy(preprocessed_task[0], tmp_path)
    plans_file = root / "nnUNet_preprocessed" / DATASET_NAME / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    fullres = plans["configurations"]["3d_fullres"]
    plans["configurations"]["3d_lowres"] = {
        "inherits_from": "3d_fullres", "data_identifier": "nnUNetPlans_3d_lowres",
        "spacing": [fullres["spacing"][0], *(2 * s for s in fullres["spacing"][1:])],
        "next_stage": "3d_cascade_fullres"}
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    plans_file.write_text(json.dumps(plans, indent=2))
    run(["nnUNetv2_preprocess", "-d", str(DATASET_ID), "-c", "3d_lowres", "-np", "1"], env)

    train(env, TRAINER, "3d_lowres", "all")
    lowres = fold_dir(root, TRAINER, "3d_lowres", "all")
    assert list((lowres.parent / "predicted_next_stage" / "3d_cascade_fullres").glob("*.b2nd"))
    train(env, TRAINER, "3d_cascade_fullres", "all")
    checkpoint = torch.load(fold_dir(root, TRAINER, "3d_cascade_fullres", "all") / "checkpoint_final.pth",
                            map_location="cpu", weights_only=False)
    first_conv = checkpoint["network_weights"]["encoder.stages.0.0.convs.0.conv.weight"]
    assert first_conv.shape[1] == 1 + 2  # image + one-hot of the two foreground classes from the lowres stage
    assert any(".attention_gates." in k for k in checkpoint["network_weights"])
