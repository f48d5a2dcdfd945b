"""Boundary metrics against geometry with known answers, and the stated conventions for empty masks."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_attention.compare import boundary

SPACING = (3.0, 1.0, 1.0)  # anisotropic, as MSD MR/CT: z is coarse
SHAPE = (40, 100, 100)
RADIUS = 30.0


def sphere(center_mm) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(SHAPE, SPACING)], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grids, center_mm)) <= RADIUS ** 2


@pytest.mark.parametrize("axis, voxels", [(2, 10), (0, 4)])  # 10 mm along a fine axis, 12 mm along the coarse one
def test_shifted_sphere_gives_the_analytic_nsd_hd95_and_assd(axis, voxels):
    # For a sphere against itself shifted by d, the distance from a surface point to the other surface is uniform
    # on [0, d] (Archimedes): NSD at tolerance t is t / d, HD95 is 0.95 d, ASSD (the mean both ways) d / 2.
    center = np.array([60.0, 45.0, 45.0])
    shifted = center.copy()
    shifted[axis] += voxels * SPACING[axis]
    d = voxels * SPACING[axis]
    a, b = sphere(center), sphere(shifted)
    for fraction in (0.25, 0.5, 0.75):
        measured = boundary.mask_metrics(b, a, SPACING, fraction * d)
        assert measured["nsd"] == pytest.approx(fraction, abs=0.12), fraction
        assert measured["empty"] is None
    assert measured["hd95"] == pytest.approx(0.95 * d, rel=0.1)
    assert measured["assd"] == pytest.approx(_assd_by_distance_transform(b, a), rel=1e-4)
    assert measured["assd"] == pytest.approx(0.5 * d, rel=0.25)  # the surfaces are voxels: d / 2 only roughly
    assert boundary.mask_metrics(b, a, SPACING, 1.05 * d)["nsd"] == pytest.approx(1.0)
    identical = boundary.mask_metrics(a, a, SPACING, 1.0)
    assert identical["nsd"] == pytest.approx(1.0) and identical["hd95"] == identical["assd"] == pytest.approx(0.0)


def _assd_by_distance_transform(prediction, reference) -> float:
    """ASSD computed independently: each mask's surface voxels (the mask minus its erosion), the distance in mm from
    each to the other's nearest surface voxel (scipy's exact Euclidean distance transform), the mean of both ways."""
    from scipy import ndimage

    surfaces = [m & ~ndimage.binary_erosion(m) for m in (prediction, reference)]
    distances = [ndimage.distance_transform_edt(~other, sampling=SPACING)[own]
                 for own, other in (surfaces, surfaces[::-1])]
    return float(np.concatenate(distances).mean())


def test_empty_masks_follow_the_stated_convention():
    empty, full = np.zeros((4, 5, 6), bool), np.zeros((4, 5, 6), bool)
    full[1:3, 1:3, 1:3] = True
    diagonal = float(np.sqrt((4 * 3.0) ** 2 + 5 ** 2 + 6 ** 2))
    assert boundary.mask_metrics(empty, empty, SPACING, 1.0) == {"nsd": 1.0, "hd95": 0.0, "assd": 0.0,
                                                                 "empty": "both"}
    worst = {"nsd": 0.0, "hd95": pytest.approx(diagonal), "assd": pytest.approx(diagonal)}
    assert boundary.mask_metrics(full, empty, SPACING, 1.0) == {**worst, "empty": "reference"}
    assert boundary.mask_metrics(empty, full, SPACING, 1.0) == {**worst, "empty": "prediction"}


def _write_cases(tmp_path, cases: dict):
    """Prediction and reference files of {case: (prediction mask, reference mask)}: (predictions, references)."""
    predictions, references = tmp_path / "pred", tmp_path / "ref"
    for folder in (predictions, references):
        folder.mkdir(parents=True, exist_ok=True)
    for name, (p, r) in cases.items():
        for folder, mask in ((predictions, p), (references, r)):
            image = sitk.GetImageFromArray(mask.astype(np.uint8))
            image.SetSpacing(SPACING[::-1])  # SimpleITK: x, y, z
            sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))
    return predictions, references


def test_folder_metrics_read_files_in_physical_spacing_and_cache_per_case(tmp_path):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    center = np.array([60.0, 45.0, 45.0])
    shifted = center + np.array([0, 0, 10.0])
    predictions, references = _write_cases(tmp_path, {"a": (sphere(shifted), sphere(center)),
                                                      "b": (sphere(center), sphere(center))})
    tolerances = {"1": 5.0}
    first = boundary.folder_metrics(str(predictions), str(references), ["a", "b"], ".nii.gz", SimpleITKIO, [1],
                                    tolerances)
    assert first["a"]["1"]["nsd"] == pytest.approx(0.5, abs=0.12)
    assert first["b"]["1"]["nsd"] == pytest.approx(1.0) and first["b"]["1"]["hd95"] == pytest.approx(0.0)
    cache = json.loads((predictions / boundary.CACHE_FILE).read_text())
    assert set(cache["cases"]) == {"a", "b"} and "MONAI" in cache["implementation"]

    cache["cases"]["b"]["metrics"]["1"]["nsd"] = 0.123  # proves the second call reads the cache
    (predictions / boundary.CACHE_FILE).write_text(json.dumps(cache))
    again = boundary.folder_metrics(str(predictions), str(references), ["a", "b"], ".nii.gz", SimpleITKIO, [1],
                                    tolerances)
    assert again["b"]["1"]["nsd"] == 0.123
    image = sitk.GetImageFromArray(sphere(center).astype(np.uint8))
    image.SetSpacing(SPACING[::-1])
    sitk.WriteImage(image, str(predictions / "a.nii.gz"))  # a changed prediction is recomputed
    changed = boundary.folder_metrics(str(predictions), str(references), ["a", "b"], ".nii.gz", SimpleITKIO, [1],
                                      tolerances)
    assert changed["a"]["1"]["nsd"] == pytest.approx(1.0) and changed["b"]["1"]["nsd"] == 0.123
    other_tolerance = boundary.folder_metrics(str(predictions), str(references), ["b"], ".nii.gz", SimpleITKIO,
                                              [1], {"1": 2.0})
    assert other_tolerance["b"]["1"]["nsd"] == pytest.approx(1.0)


@pytest.mark.slow  # starts worker processes
def test_workers_start_once_the_work_left_pays_for_them_and_serve_every_folder_after(tmp_path):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    center = np.array([60.0, 45.0, 45.0])
    cases = {f"c{i}": (sphere(center + np.array([0, 0, 2.0 * i])), sphere(center)) for i in range(3)}
    folders = [_write_cases(tmp_path / name, cases) for name in ("first", "second")]
    alone = boundary.folder_metrics(*map(str, folders[0]), list(cases), ".nii.gz", SimpleITKIO, [1], {"1": 2.0})
    for predictions, _ in folders:
        (predictions / boundary.CACHE_FILE).unlink(missing_ok=True)
    with boundary.CaseWorkers(2, pool_start_seconds=0) as workers:
        first = boundary.folder_metrics(*map(str, folders[0]), list(cases), ".nii.gz", SimpleITKIO, [1], {"1": 2.0},
                                        workers)
        pool = workers._pool
        assert pool is not None  # the first case measured here, the two left in the pool
        second = boundary.folder_metrics(*map(str, folders[1]), list(cases), ".nii.gz", SimpleITKIO, [1],
                                         {"1": 2.0}, workers)
        assert workers._pool is pool  # the same processes for the next folder
    assert workers._pool is None
    assert first == alone == second
    with boundary.CaseWorkers(2) as workers:  # tiny cases: the work left never pays for a pool
        boundary.folder_metrics(*map(str, folders[0]), list(cases), ".nii.gz", SimpleITKIO, [1], {"1": 3.0}, workers)
        assert workers._pool is None
