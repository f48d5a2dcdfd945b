import json

import numpy as np
import SimpleITK as sitk

from nnunet_attention.study.synth import write_msd_task


def test_synth_writes_a_deterministic_msd_task(tmp_path):
    a = write_msd_task(str(tmp_path / "a"), task_id=42, cases=3, test_cases=1, seed=7, shape=(12, 40, 40))
    b = write_msd_task(str(tmp_path / "b"), task_id=42, cases=3, test_cases=1, seed=7, shape=(12, 40, 40))
    assert a.endswith("Task042_AttentionSynth")
    dataset = json.loads(open(f"{a}/dataset.json").read())
    assert dataset["modality"] == {"0": "MRI"} and set(dataset["labels"]) == {"0", "1", "2"}
    assert dataset["numTraining"] == 3 and len(dataset["training"]) == 3 and len(dataset["test"]) == 1
    labels_seen = set()
    for entry in dataset["training"]:
        for key in ("image", "label"):
            first, second = (sitk.ReadImage(f"{root}/{entry[key]}") for root in (a, b))
            assert np.array_equal(sitk.GetArrayFromImage(first), sitk.GetArrayFromImage(second))
            assert first.GetSpacing()[2] > 2 * first.GetSpacing()[0]  # anisotropic, thick slices
        labels_seen |= set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(f"{a}/{entry['label']}"))).tolist())
    assert labels_seen == {0, 1, 2}


def test_synth_refuses_bad_arguments(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "nnunet_attention.cli", "synth", "-o", str(tmp_path),
                             "--task-id", "1000"], capture_output=True, text=True)
    assert result.returncode == 2 and "--task-id" in result.stderr and "Traceback" not in result.stderr
