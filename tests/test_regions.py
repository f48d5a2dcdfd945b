"""A region-based task (BraTS-style nested regions with regions_class_order) through both trainers, --npz
validation, compare (region names and a verdict), find_best, predict and maps: nnU-Net's real CLIs."""
import json

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import CLI, TINY_SHAPE, TINY_TRAINERS, nnunet_env, run, train_in_parallel

from nnunet_attention.synth import write_msd_task

pytestmark = pytest.mark.slow  # plans, preprocesses and trains through nnU-Net's CLIs

DATASET_ID, DATASET = 992, "Dataset992_AttentionSynth"
# "lesion" is nodule or cyst (labels 1 and 2), "cyst" is label 2 inside it: nested, as BraTS' whole tumour and core
REGIONS = {"background": 0, "lesion": [1, 2], "cyst": 2}


def test_region_based_task_end_to_end(tmp_path):
    env = nnunet_env(tmp_path)
    task = write_msd_task(str(tmp_path / "msd"), task_id=DATASET_ID, cases=5, test_cases=1, seed=3, shape=TINY_SHAPE)
    run(["nnUNetv2_convert_MSD_dataset", "-i", task, "-np", "1"], env)
    dataset_json = tmp_path / "nnUNet_raw" / DATASET / "dataset.json"
    content = json.loads(dataset_json.read_text())
    dataset_json.write_text(json.dumps({**content, "labels": REGIONS, "regions_class_order": [1, 2]}))
    run(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1"], env)
    train_in_parallel(env, [(t, "3d_fullres", 0, "--npz") for t in TINY_TRAINERS], dataset=DATASET_ID)

    report_dir = tmp_path / "compare"
    compare = run([*CLI, "compare", "-d", str(DATASET_ID), "-c", "3d_fullres", "-tr", *TINY_TRAINERS, "-f", "0",
                   "-o", str(report_dir), "-np", "1"], env)
    assert f"verdict {DATASET} 3d_fullres" in compare.stdout
    report = json.loads((report_dir / "report.json").read_text())
    assert report["datasets"][DATASET]["configurations"]["3d_fullres"]["labels"] == ["lesion", "cyst"]
    (verdict,) = report["verdict"]
    assert verdict["metrics"]["dice"]["verdict"] == "inconclusive"  # one fold: never more than that

    run(["nnUNetv2_find_best_configuration", str(DATASET_ID), "-c", "3d_fullres", "-tr", *TINY_TRAINERS, "-f", "0",
         "-np", "1"], env)
    assert (tmp_path / "nnUNet_results" / DATASET / "inference_information.json").is_file()

    images = tmp_path / "nnUNet_raw" / DATASET / "imagesTs"
    predictions = tmp_path / "predictions"
    run(["nnUNetv2_predict", "-i", str(images), "-o", str(predictions), "-d", str(DATASET_ID), "-c", "3d_fullres",
         "-tr", TINY_TRAINERS[1], "-f", "0", "-device", "cpu", "--disable_tta", "-npp", "1", "-nps", "1"], env)
    maps = run([*CLI, "maps", "-i", str(images), "-o", str(tmp_path / "maps"), "-d", str(DATASET_ID), "-c",
                "3d_fullres", "-tr", TINY_TRAINERS[1], "-f", "0", "-device", "cpu", "--disable_tta", "--no_png"], env)
    assert "mean alpha" in maps.stdout
    for predicted in predictions.glob("*.nii.gz"):
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "maps" / predicted.name)))
        assert np.array_equal(ours, sitk.GetArrayFromImage(sitk.ReadImage(str(predicted))))
        assert set(np.unique(ours)) <= {0, 1, 2}  # regions written back as nnU-Net's labels
