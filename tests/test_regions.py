"""A region-based task (BraTS-style nested regions with regions_class_order, conftest.region_models) after training
with both trainers: find_best, predict and maps through nnU-Net's real CLIs (compare: test_compare)."""
import numpy as np
import pytest
import SimpleITK as sitk
from helpers import CLI, REGION_DATASET_ID, REGION_DATASET_NAME, TINY_TRAINERS, private_copy, run

from nnunet_attention.study import steps

pytestmark = pytest.mark.slow  # plans, preprocesses and trains through nnU-Net's CLIs


def test_region_based_task_find_best_predict_and_maps(region_models, tmp_path):
    root, env = private_copy(region_models[0], tmp_path / "copy", results=True)  # find_best writes into results
    run(["nnUNetv2_find_best_configuration", str(REGION_DATASET_ID), "-c", "3d_fullres", "-tr", *TINY_TRAINERS,
         "-f", "0", "-np", "1"], env)
    assert (root / "nnUNet_results" / REGION_DATASET_NAME / "inference_information.json").is_file()

    images = root / "nnUNet_raw" / REGION_DATASET_NAME / "imagesTs"
    predictions = tmp_path / "predictions"
    run(["nnUNetv2_predict", "-i", str(images), "-o", str(predictions), "-d", str(REGION_DATASET_ID), "-c",
         "3d_fullres", "-tr", TINY_TRAINERS[1], "-f", "0", "-device", "cpu", *steps.CPU_PREDICTION], env)
    maps = run([*CLI, "maps", "-i", str(images), "-o", str(tmp_path / "maps"), "-d", str(REGION_DATASET_ID), "-c",
                "3d_fullres", "-tr", TINY_TRAINERS[1], "-f", "0", "-device", "cpu", "--disable_tta", "--no_png"], env)
    assert "mean alpha" in maps.stdout
    predicted = list(predictions.glob("*.nii.gz"))
    assert predicted
    for prediction in predicted:
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "maps" / prediction.name)))
        assert np.array_equal(ours, sitk.GetArrayFromImage(sitk.ReadImage(str(prediction))))
        assert set(np.unique(ours)) <= {0, 1, 2}  # regions written back as nnU-Net's labels
