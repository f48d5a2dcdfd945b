"""nnunet-attention maps on a 2-fold tiny gated model, against nnUNetv2_predict on the same model."""
import csv
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import DATASET_ID, DATASET_NAME, TINY_TRAINERS, cli_in_process

pytestmark = pytest.mark.slow  # plans, preprocesses or trains through nnU-Net's CLIs

UNGATED, GATED = TINY_TRAINERS
CLI = [sys.executable, "-m", "nnunet_attention.cli"]
LEVELS = (1, 2)  # the tiny plan has 4 stages: skips at levels 0-2, the full-resolution one ungated


def _maps(env, images, out, *extra, trainer=GATED, folds=("0", "1")):
    return subprocess.run([*CLI, "maps", "-i", str(images), "-o", str(out), "-d", str(DATASET_ID), "-c", "3d_fullres",
                           "-tr", trainer, "-f", *folds, "-device", "cpu", "--disable_tta", *extra],
                          env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def maps_output(trained_models, tmp_path_factory):
    root, env = trained_models
    images = root / "nnUNet_raw" / DATASET_NAME / "imagesTs"
    out = tmp_path_factory.mktemp("maps")
    result = _maps(env, images, out)
    assert result.returncode == 0, result.stderr
    return root, env, images, out


def test_maps_have_the_input_geometry_and_values_in_unit_interval(maps_output):
    _, _, images, out = maps_output
    for image_file in sorted(images.glob("*_0000.nii.gz")):
        case = image_file.name.replace("_0000.nii.gz", "")
        image = sitk.ReadImage(str(image_file))
        image_array = sitk.GetArrayFromImage(image)
        nonzero = np.argwhere(image_array != 0)
        low, high = nonzero.min(0), nonzero.max(0) + 1
        files = sorted(out.glob(f"{case}_attention_level*.nii.gz"))
        assert [f.name for f in files] == [f"{case}_attention_level{level}.nii.gz" for level in LEVELS]
        for f in files:
            attention = sitk.ReadImage(str(f))
            assert attention.GetSize() == image.GetSize()
            np.testing.assert_allclose(attention.GetSpacing(), image.GetSpacing(), rtol=1e-6)
            np.testing.assert_allclose(attention.GetOrigin(), image.GetOrigin(), atol=1e-6)
            np.testing.assert_allclose(attention.GetDirection(), image.GetDirection(), atol=1e-6)
            values = sitk.GetArrayFromImage(attention)
            assert values.dtype == np.float32 and values.min() >= 0 and values.max() <= 1
            inside = values[tuple(slice(a, b) for a, b in zip(low, high))]
            assert (inside > 0).mean() > 0.95  # sigmoid coefficients where nnU-Net looked (edges resample to 0)
            outside = values.copy()
            outside[tuple(slice(a, b) for a, b in zip(low, high))] = 0
            assert not outside.any()  # nnU-Net cropped the zero border away: no attention there
        assert (out / f"{case}_attention.png").stat().st_size > 0


def test_segmentations_equal_nnunetv2_predict(maps_output, gated_predictions):
    out = maps_output[3]
    predictions = gated_predictions[1]
    assert len(list(predictions.glob("*.nii.gz"))) == 2
    for predicted in sorted(predictions.glob("*.nii.gz")):
        ours = sitk.ReadImage(str(out / predicted.name))
        theirs = sitk.ReadImage(str(predicted))
        assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs))
        assert ours.GetSpacing() == theirs.GetSpacing() and ours.GetOrigin() == theirs.GetOrigin()


def test_two_fold_maps_are_the_average_of_the_single_fold_maps(maps_output, tmp_path):
    _, env, images, out = maps_output
    singles = []
    for fold in ("0", "1"):
        result = _maps(env, images, tmp_path / fold, "--levels", "1", "--no_png", folds=(fold,))
        assert result.returncode == 0, result.stderr
        singles.append(tmp_path / fold)
    for averaged_file in sorted(out.glob("*_attention_level1.nii.gz")):
        averaged = sitk.GetArrayFromImage(sitk.ReadImage(str(averaged_file)))
        per_fold = [sitk.GetArrayFromImage(sitk.ReadImage(str(folder / averaged_file.name))) for folder in singles]
        np.testing.assert_allclose(averaged, (per_fold[0] + per_fold[1]) / 2, atol=2e-3)
        assert not (singles[0] / averaged_file.name.replace("level1", "level2")).exists()


def _maps_in_process(capsys, monkeypatch, env, images, out, *extra, trainer=GATED, folds=("0",)):
    return cli_in_process(capsys, "maps", "-i", images, "-o", out, "-d", DATASET_ID, "-c", "3d_fullres", "-tr",
                          trainer, "-f", *folds, "-device", "cpu", "--disable_tta", *extra, monkeypatch=monkeypatch,
                          env=env)


def test_ungated_model_and_missing_fold_are_one_line_errors(maps_output, tmp_path, capsys, monkeypatch):
    root, env, images, _ = maps_output
    status, err = _maps_in_process(capsys, monkeypatch, env, images, tmp_path / "a", trainer=UNGATED)
    assert status == 2 and "has no attention gates" in err and len(err.strip().splitlines()) == 1
    status, err = _maps_in_process(capsys, monkeypatch, env, images, tmp_path / "b", folds=("4",))
    assert status == 2 and "Traceback" not in err
    assert str(root / "nnUNet_results" / DATASET_NAME / f"{GATED}__nnUNetPlans__3d_fullres" / "fold_4") in err


def test_unknown_level_is_a_one_line_error(maps_output, tmp_path, capsys, monkeypatch):
    _, env, images, _ = maps_output
    status, err = _maps_in_process(capsys, monkeypatch, env, images, tmp_path, "--levels", "0")
    assert status == 2 and "gated levels [1, 2]" in err


def test_attention_summary_numbers_come_from_the_written_maps(maps_output):
    _, _, images, out = maps_output
    rows = list(csv.DictReader(open(out / "attention_summary.csv")))
    cases = sorted(f.name.replace("_0000.nii.gz", "") for f in images.glob("*_0000.nii.gz"))
    assert sorted((r["case"], int(r["level"])) for r in rows) == [(c, lv) for c in cases for lv in LEVELS]
    for row in rows:
        alpha = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{row['case']}_attention_level{row['level']}.nii.gz")))
        foreground = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{row['case']}.nii.gz"))) > 0
        assert int(row["foreground_voxels"]) == foreground.sum()
        if foreground.any():
            assert float(row["mean_alpha_foreground"]) == pytest.approx(alpha[foreground].mean(), abs=1e-5)
        assert 0 <= float(row["mean_alpha_elsewhere"]) <= 1


@pytest.mark.parametrize("files, expected", [
    ({}, "no .nii.gz images"),
    ({"case_0000.mha": None}, "found: .mha"),
    ({"case.nii.gz": "copy"}, "lacks the channel suffix"),
    ({"case_0000.nii.gz": "copy", "case_0001.nii.gz": "copy"}, "takes 1 channel"),
    ({"case_0000.nii.gz": "copy", "broken_0000.nii.gz": None}, "broken_0000.nii.gz is not an image SimpleITK can read"),
])
def test_everyday_input_mistakes_are_one_line_errors(maps_output, tmp_path, files, expected, capsys, monkeypatch):
    _, env, images, _ = maps_output
    source = sorted(images.glob("*_0000.nii.gz"))[0]
    folder = tmp_path / "in"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(source.read_bytes() if content == "copy" else b"x")
    status, err = _maps_in_process(capsys, monkeypatch, env, folder, tmp_path / "out")
    assert status == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and expected in err
    assert not (tmp_path / "out").exists()


def test_maps_never_replace_files_in_the_output_folder_unasked(maps_output, capsys, monkeypatch):
    """A validation folder or labelsTr holds files of the names maps writes: refused, byte for byte unchanged."""
    _, env, images, out = maps_output
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    status, err = _maps_in_process(capsys, monkeypatch, env, images, out)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "maps would replace" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
