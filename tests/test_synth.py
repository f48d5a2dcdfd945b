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


def test_a_study_refuses_a_generated_task_drawn_with_other_settings(tmp_path):
    """An earlier demo's folder (another seed, or a version that did not record it) is not taken for this one's."""
    import os
    import subprocess
    import sys

    import pytest

    from nnunet_attention.errors import NnUNetAttentionError
    from nnunet_attention.nnunet_api import trainers_found_through_ext_folder
    from nnunet_attention.study.steps import check_generated_task

    work = tmp_path / "work"
    task = write_msd_task(str(work / "msd"), cases=3, test_cases=0, seed=0, shape=(10, 16, 16))
    asked = {"cases": 3, "test_cases": 0, "seed": 0, "shape": (10, 16, 16)}
    check_generated_task(task, asked)
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    for record in ("kept", "dropped"):
        if record == "dropped":
            dataset = json.loads(open(f"{task}/dataset.json").read())
            del dataset["synth"]
            open(f"{task}/dataset.json", "w").write(json.dumps(dataset))
        with pytest.raises(NnUNetAttentionError, match="holds a generated task drawn with"):
            check_generated_task(task, {**asked, "seed": 1000})
        if not trainers_found_through_ext_folder():
            continue  # nnU-Net before 2.8: the demo looks its trainer up first (trainers --install), then the task
        before = open(f"{task}/dataset.json").read()
        result = subprocess.run([sys.executable, "-m", "nnunet_attention.cli", "demo", "-o", str(work)],
                                capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert "holds a generated task drawn with" in result.stderr and "use a new work folder" in result.stderr
        assert ("does not record" in result.stderr) == (record == "dropped")
        assert open(f"{task}/dataset.json").read() == before and not list((work / "nnUNet_raw").iterdir())
