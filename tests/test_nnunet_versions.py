"""The nnU-Net versions we support (nnunet_api.SUPPORTED_NNUNET), each difference behind nnunet_api.

The fast tests run under whichever nnU-Net is installed (.ci/run: 2.8.1, then 2.5.2 with torch 2.5 in a second
environment); the end-to-end test is the README's path on nnU-Net 2.5 to 2.7, where nnU-Net searches only its own
trainer folder:
``nnunet-attention trainers --install``, the tests' tiny trainers put there as a user of those versions puts their own
(subclasses of ours), then nnU-Net's own CLIs train both trainers (one of them paired), predict, and compare reports;
``--remove`` leaves nnU-Net's folder as it was."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import (CLI, DATASET_ID, DATASET_NAME, TEST_TRAINERS, TINY_TRAINERS, fold_dir, prepare_task, python_cmd,
                     run)

from nnunet_attention import nnunet_api
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.model import discovery

OLD_NNUNET = not nnunet_api.trainers_found_through_ext_folder()
USERS_MODULE = "nnunet_attention_test_trainers.py"  # the tests' tiny trainers, where a 2.5-2.7 user puts their own


@pytest.mark.parametrize("installed", [(2, 4, 2), (2, 5, 1), (2, 9, 0), (3, 0, 0)])
def test_an_unsupported_nnunet_is_a_one_line_error_naming_the_range(installed, monkeypatch):
    monkeypatch.setattr(nnunet_api, "nnunet_version", lambda: installed)
    with pytest.raises(NnUNetAttentionError, match=r"supports nnunetv2 2\.5\.2 up to \(not including\) 2\.9") as e:
        nnunet_api.check_nnunet_version()
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("nnunet, torch, runs", [((2, 5, 2), (2, 5, 1), True), ((2, 5, 2), (2, 6, 0), False),
                                                 ((2, 5, 2), (2, 14, 1), False), ((2, 6, 4), (2, 14, 1), True)])
def test_nnunet_2_5_on_a_torch_it_cannot_run_on_is_a_one_line_error(nnunet, torch, runs, monkeypatch):
    """nnU-Net 2.5's checkpoint loading needs torch.load's weights_only=False default (torch 2.6 flipped it) and its
    PolyLRScheduler passes the verbose argument torch 2.7 removed: on such a torch our trainers refuse at import."""
    monkeypatch.setattr(nnunet_api, "nnunet_version", lambda: nnunet)
    monkeypatch.setattr(nnunet_api, "torch_version", lambda: torch)
    if runs:
        nnunet_api.check_nnunet_version()
        return
    with pytest.raises(NnUNetAttentionError, match=r"does not run on torch .*pip install 'torch<2\.6'") as e:
        nnunet_api.check_nnunet_version()
    assert "\n" not in str(e.value)


def test_the_installed_nnunet_is_supported_and_matches_the_pyproject_pin():
    nnunet_api.check_nnunet_version()
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    oldest, first_unsupported = (".".join(map(str, v)) for v in nnunet_api.SUPPORTED_NNUNET)
    assert f'"nnunetv2>={oldest},<{first_unsupported}"' in pyproject


def test_both_build_network_signatures_give_the_same_network():
    """build_network calls a trainer as the installed nnU-Net would; our trainer answers in that signature."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

    from nnunet_attention.model.networks import gates_by_level
    from nnunet_attention.model.trainers import nnUNetTrainerAttention
    from nnunet_attention.tools.reference_plans import reference_configurations

    cm = ConfigurationManager(reference_configurations()["hippocampus_3d_fullres"])
    torch.manual_seed(0)
    ours = nnunet_api.build_network(nnUNetTrainerAttention, None, cm, 1, 3, True)
    torch.manual_seed(0)
    theirs = nnunet_api.build_network(nnUNetTrainer, None, cm, 1, 3, True)
    assert gates_by_level(ours) and not gates_by_level(theirs)
    assert nnunet_api._builds_from_managers(nnUNetTrainerAttention) == nnunet_api._builds_from_managers(nnUNetTrainer)


def _shim_package(tmp_path) -> Path:
    package = tmp_path / "trainer_folder"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / discovery.SHIM_NAME).write_text(discovery.SHIM)
    return package


def test_the_installed_module_hands_nnunet_our_trainers(tmp_path):
    _shim_package(tmp_path)
    out = subprocess.run(python_cmd(
        "import sys; sys.path.insert(0, sys.argv[1])",
        "import trainer_folder.nnunet_attention_trainers as shim",
        "from nnunet_attention.model import trainers",
        "print(shim.nnUNetTrainerAttention is trainers.nnUNetTrainerAttention)") + [str(tmp_path)],
        capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True" and not out.stderr.strip()  # 2.6/2.7 print unset paths


def test_the_installed_module_adds_nothing_and_fails_nothing_once_we_are_uninstalled(tmp_path):
    """-I -S: no site-packages, no PYTHONPATH, no working folder on the path, so nnunet_attention cannot be imported,
    as after pip uninstall nnunet-attention."""
    _shim_package(tmp_path)
    out = subprocess.run([sys.executable, "-I", "-S", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                          "import trainer_folder.nnunet_attention_trainers as shim; "
                          "print([n for n in dir(shim) if n.startswith('nnUNet')])", str(tmp_path)],
                         capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]" and not out.stderr.strip()


def test_install_refuses_to_overwrite_a_file_it_did_not_write(tmp_path, monkeypatch):
    monkeypatch.setattr(discovery, "nnunet_trainer_folder", lambda: str(tmp_path))
    (tmp_path / discovery.SHIM_NAME).write_text("# a user's own module\n")
    with pytest.raises(FileExistsError):
        discovery.install_shim()
    with pytest.raises(FileExistsError):
        discovery.remove_shim()
    assert (tmp_path / discovery.SHIM_NAME).read_text() == "# a user's own module\n"
    (tmp_path / discovery.SHIM_NAME).unlink()
    assert Path(discovery.install_shim()).read_text() == discovery.SHIM
    discovery.remove_shim()
    assert not (tmp_path / discovery.SHIM_NAME).exists()


@pytest.mark.slow  # plans and trains through nnU-Net's CLIs
@pytest.mark.versions
@pytest.mark.skipif(not OLD_NNUNET, reason="nnU-Net 2.8 and later find our trainers through nnUNet_extTrainer: "
                                           "test_end_to_end.py covers that path")
def test_on_an_nnunet_before_2_8_install_train_predict_compare_remove(tmp_path):
    env = prepare_task(tmp_path, DATASET_ID, ["3d_fullres"], cases=6, test_cases=2, seed=1)
    env = {**env, "nnUNet_n_proc_DA": "0"}
    env.pop("nnUNet_extTrainer")  # not read before 2.8
    shim = Path(discovery.shim_path())
    users = shim.parent / USERS_MODULE
    assert not shim.exists() and not users.exists()
    try:
        run([*CLI, "trainers", "--install"], env)
        listing = run([*CLI, "trainers"], env)
        assert "nnUNetTrainerAttentionDemo" in listing.stdout and str(shim) in listing.stderr
        shutil.copy(TEST_TRAINERS / "tiny_trainers.py", users)
        ungated, gated = TINY_TRAINERS
        run(["nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-tr", ungated, "-device", "cpu", "--npz"], env)
        run(["nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-tr", gated, "-device", "cpu", "--npz"], env)
        log = next(fold_dir(tmp_path, gated, "3d_fullres", 0).glob("training_log_*.txt")).read_text()
        assert "Attention gates (paper init) on the skip connections of levels" in log
        run([*CLI, "train", str(DATASET_ID), "3d_fullres", "1", "-tr", gated, "--seed", "3", "-device", "cpu"], env)
        assert (fold_dir(tmp_path, gated, "3d_fullres", 1) / "pairing.json").is_file()
        predictions = tmp_path / "predictions"
        run(["nnUNetv2_predict", "-i", str(tmp_path / "nnUNet_raw" / DATASET_NAME / "imagesTs"), "-o",
             str(predictions), "-d", str(DATASET_ID), "-c", "3d_fullres", "-tr", gated, "-f", "0", "-device", "cpu",
             "--disable_tta"], env)
        assert len(list(predictions.glob("*.nii.gz"))) == 2
        report = tmp_path / "report"
        run([*CLI, "compare", "-d", str(DATASET_ID), "-c", "3d_fullres", "-tr", ungated, gated, "-f", "0", "-o",
             str(report)], env)
        assert (report / "report.json").is_file()
    finally:
        users.unlink(missing_ok=True)
        subprocess.run([*CLI, "trainers", "--remove"], env=env, capture_output=True)
    assert not shim.exists()
    search = run(python_cmd(  # nnU-Net's own trainers are found as before
        "import os, nnunetv2",
        "from nnunetv2.utilities.find_class_by_name import recursive_find_python_class as find",
        "print(find(os.path.join(nnunetv2.__path__[0], 'training', 'nnUNetTrainer'), 'nnUNetTrainer_5epochs',",
        "           'nnunetv2.training.nnUNetTrainer').__name__)"), env)
    assert search.stdout.strip() == "nnUNetTrainer_5epochs"
