"""Kill -9 in the middle of a gated training, then nnU-Net's --c: training continues from the saved epoch."""
import glob
import os
import signal
import subprocess
import time

import pytest
from helpers import DATASET_ID, fold_dir, run

pytestmark = pytest.mark.slow  # trains through nnU-Net's CLIs

TRAINER = "nnUNetTrainerAttentionTinyResumable"  # 5 epochs, checkpoint_latest.pth after every epoch


def _epochs_logged(folder) -> list:
    """Epoch numbers each training log in folder starts, in order of the logs."""
    started = []
    for log in sorted(glob.glob(os.path.join(folder, "training_log_*.txt")), key=os.path.getmtime):
        epochs = [int(line.split("Epoch ")[1]) for line in open(log) if line.split(": ", 1)[-1].startswith("Epoch ")
                  and line.strip().split("Epoch ")[1].isdigit()]
        started.append(epochs)
    return started


def test_sigkill_then_continue_resumes_the_gated_training(preprocessed_task, tmp_path):
    root, env = preprocessed_task
    folder = fold_dir(root, TRAINER, "3d_fullres", 4)
    command = ["nnUNetv2_train", str(DATASET_ID), "3d_fullres", "4", "-tr", TRAINER, "-device", "cpu"]
    process = subprocess.Popen(command, env={**env, "nnUNet_n_proc_DA": "0"}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    # "Epoch 2" in the log: checkpoint_latest.pth of epoch 1 has been written completely
    while time.time() < deadline and not any(2 in e for e in _epochs_logged(folder)):
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert (folder / "checkpoint_latest.pth").is_file() and not (folder / "checkpoint_final.pth").exists()

    run([*command, "--c"], {**env, "nnUNet_n_proc_DA": "0"})
    first_run, resumed = _epochs_logged(folder)
    assert first_run[0] == 0 and resumed[0] >= 2 and resumed[-1] == 4  # continued, not restarted
    assert (folder / "checkpoint_final.pth").is_file() and not (folder / "checkpoint_latest.pth").exists()

    images = root / "nnUNet_raw" / "Dataset990_AttentionSynth" / "imagesTs"
    run(["nnUNetv2_predict", "-i", str(images), "-o", str(tmp_path), "-d", str(DATASET_ID), "-c", "3d_fullres",
         "-tr", TRAINER, "-f", "4", "-device", "cpu", "--disable_tta", "-npp", "1", "-nps", "1"], env)
    assert len(list(tmp_path.glob("*.nii.gz"))) == len(list(images.glob("*_0000.nii.gz")))
