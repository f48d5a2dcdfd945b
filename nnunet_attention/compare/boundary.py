"""Boundary metrics per case and class, in physical spacing, from the files nnU-Net already wrote.

NSD (normalised surface Dice) at a tolerance in mm and HD95 (95th-percentile Hausdorff distance) in mm, computed
with MONAI: maintained, on PyPI, both metrics in physical spacing, and its surface Dice with ``use_subvoxels=True``
is DeepMind's surfel-based NSD (the ``surface-distance`` code most MSD-era papers used, which is not maintained as a
package). HD95 is MONAI's ``compute_hausdorff_distance(percentile=95, directed=False)``: the larger of the two
directed 95th percentiles of the surface distances. Hausdorff implementations disagree, so the report names this one
(``IMPLEMENTATION``).

Empty masks (Metrics Reloaded asks to state it): reference and prediction both empty -> NSD 1, HD95 0; exactly one
of them empty -> NSD 0, HD95 = the image's diagonal in mm (the largest distance possible in that image), so a missed
or hallucinated structure stays in the statistics with the worst value. The report counts such cases per class.

nnU-Net's ignore label: voxels the reference marks as ignore are taken out of both masks before measuring, as
nnU-Net's Dice leaves them out of TP, FP and FN; a prediction that differs from the reference only there scores
NSD 1 and HD95 0. Each case also records the reference structure's volume in mm^3 (compare groups cases by it).

Per fold, the results are cached in ``nnunet_attention_boundary_metrics.json`` beside nnU-Net's ``summary.json``;
a case is recomputed when its prediction or reference file changes (size or modification time), or the tolerance or
the implementation does.
"""
import json
import multiprocessing
import os
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.files import write_text

CACHE_FILE = "nnunet_attention_boundary_metrics.json"
CACHE_FORMAT = 2  # 2: ignore label honoured, reference volume recorded
EMPTY_CONVENTION = ("both empty: NSD 1, HD95 0 mm; exactly one empty: NSD 0, HD95 = the image diagonal in mm")
LabelOrRegion = Union[int, Tuple[int, ...]]


def implementation() -> str:
    from importlib.metadata import version

    return (f"MONAI {version('monai')}: compute_surface_dice(use_subvoxels=True) for NSD, "
            f"compute_hausdorff_distance(percentile=95, directed=False) for HD95")


def _crop_to_union(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to their union's bounding box plus one voxel: distances stay the same, work shrinks."""
    where = np.argwhere(a | b)
    low = np.maximum(where.min(0) - 1, 0)
    high = np.minimum(where.max(0) + 2, a.shape)
    box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
    return a[box], b[box]


def mask_metrics(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float], tolerance: float) -> dict:
    """{"nsd", "hd95", "empty"} for two boolean masks of the same shape; spacing in mm per array axis; empty is
    None, "both", "reference" or "prediction" (see the module's convention)."""
    import torch
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    has_prediction, has_reference = bool(prediction.any()), bool(reference.any())
    if not has_prediction and not has_reference:
        return {"nsd": 1.0, "hd95": 0.0, "empty": "both"}
    if not (has_prediction and has_reference):
        diagonal = float(np.sqrt(np.sum((np.array(prediction.shape) * np.array(spacing, dtype=float)) ** 2)))
        return {"nsd": 0.0, "hd95": diagonal, "empty": "prediction" if has_reference else "reference"}
    prediction, reference = _crop_to_union(prediction, reference)
    p = torch.from_numpy(np.ascontiguousarray(prediction[None, None], dtype=np.float32))
    r = torch.from_numpy(np.ascontiguousarray(reference[None, None], dtype=np.float32))
    spacing = [float(s) for s in spacing]
    with warnings.catch_warnings():  # MONAI's own deprecation notices, not about these inputs
        warnings.simplefilter("ignore", FutureWarning)
        nsd = compute_surface_dice(p, r, [float(tolerance)], include_background=True, spacing=spacing,
                                   use_subvoxels=True)
        hd95 = compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=spacing)
    return {"nsd": float(nsd.item()), "hd95": float(hd95.item()), "empty": None}


def case_metrics(prediction_file: str, reference_file: str, reader_class: type, labels: Sequence[LabelOrRegion],
                 tolerances: Dict[str, float], ignore_label: Optional[int] = None) -> Dict[str, dict]:
    """Per label or region key (nnU-Net's key, e.g. "1" or "(1, 2)"): mask_metrics of one case plus the reference's
    volume in mm^3 ("reference_mm3"), voxels under ignore_label left out of both masks."""
    from nnunetv2.evaluation.evaluate_predictions import label_or_region_to_key, region_or_label_to_mask

    reader = reader_class()
    reference, properties = reader.read_seg(reference_file)
    prediction, _ = reader.read_seg(prediction_file)
    spacing = properties["spacing"]
    reference, prediction = reference[0], prediction[0]
    if len(spacing) != reference.ndim:  # 2D images are read as one slice
        spacing = [1.0] * (reference.ndim - len(spacing)) + list(spacing)
    counted = reference != ignore_label if ignore_label is not None else np.ones(reference.shape, dtype=bool)
    voxel_mm3 = float(np.prod(np.asarray(spacing, dtype=float)))
    results = {}
    for label in labels:
        key = label_or_region_to_key(label)
        reference_mask = region_or_label_to_mask(reference, label) & counted
        results[key] = {**mask_metrics(region_or_label_to_mask(prediction, label) & counted, reference_mask,
                                       spacing, tolerances[key]),
                        "reference_mm3": float(reference_mask.sum()) * voxel_mm3}
    return results


def _fingerprint(*files: str) -> List[int]:
    return [v for f in files for v in (os.stat(f).st_size, os.stat(f).st_mtime_ns)]


def _case_job(arguments):
    case, prediction_file, reference_file, reader_class, labels, tolerances, ignore_label = arguments
    return case, case_metrics(prediction_file, reference_file, reader_class, labels, tolerances, ignore_label)


class CaseWorkers:
    """Measures cases here until the work left would outlast starting worker processes, then in a pool that every
    folder after it shares (a spawned worker imports torch, MONAI and nnU-Net: seconds that tiny validation sets or a
    pool per folder would pay again and again). Use as a context manager.

    Args:
        num_processes: processes at most, and no more than the CPUs (a CPU-bound worker beyond them only costs its
            start-up); 1 measures every case here.
        pool_start_seconds: what starting the pool is taken to cost; the pool starts once the cases left times the
            last case's seconds exceed it.
    """

    def __init__(self, num_processes: int = 1, pool_start_seconds: float = 15.0):
        self.num_processes = min(num_processes, os.cpu_count() or 1)
        self.pool_start_seconds = pool_start_seconds
        self._pool = None
        self._case_seconds = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    def _pool_pays(self, cases_left: int) -> bool:
        if self._pool is not None:
            return True
        return (self.num_processes > 1 and self._case_seconds is not None
                and cases_left * self._case_seconds > self.pool_start_seconds)

    def measure(self, jobs: list):
        """(case, metrics) of each job, in the order they finish."""
        import monai.metrics  # noqa: F401  (imported before the first case is timed: its seconds are the case's own)

        pending = list(jobs)
        while pending and not self._pool_pays(len(pending)):
            start = time.perf_counter()
            yield _case_job(pending.pop(0))
            self._case_seconds = time.perf_counter() - start
        if pending:
            if self._pool is None:
                self._pool = multiprocessing.get_context("spawn").Pool(self.num_processes)
            yield from self._pool.imap_unordered(_case_job, pending)


def folder_metrics(prediction_folder: str, reference_folder: str, cases: Sequence[str], file_ending: str,
                   reader_class: type, labels: Sequence[LabelOrRegion], tolerances: Dict[str, float],
                   workers: Optional[CaseWorkers] = None, progress: Optional[Callable[[int, int], None]] = None,
                   ignore_label: Optional[int] = None) -> Dict[str, dict]:
    """case -> key -> {"nsd", "hd95", "empty", "reference_mm3"} for the cases' predictions in prediction_folder against
    reference_folder (nnUNet_preprocessed/DatasetX/gt_segmentations), cached in prediction_folder/CACHE_FILE;
    measured by workers (default: in this process)."""
    cache_file = os.path.join(prediction_folder, CACHE_FILE)
    version = f"{implementation()}; format {CACHE_FORMAT}; ignore label {ignore_label}"
    cached = {}
    if os.path.isfile(cache_file):
        try:
            with open(cache_file) as f:
                stored = json.load(f)
            if stored.get("implementation") == version:
                cached = stored.get("cases", {})
        except (OSError, ValueError):
            cached = {}  # a damaged cache is recomputed, never trusted
    results, jobs, fingerprints = {}, [], {}
    for case in cases:
        prediction_file = os.path.join(prediction_folder, case + file_ending)
        reference_file = os.path.join(reference_folder, case + file_ending)
        for f in (prediction_file, reference_file):
            if not os.path.isfile(f):
                raise NnUNetAttentionError(f"{f} not found: boundary metrics need every validation prediction and "
                                           f"its reference (re-run validation with nnUNetv2_train ... --val)")
        fingerprints[case] = _fingerprint(prediction_file, reference_file)
        entry = cached.get(case)
        if entry and entry.get("fingerprint") == fingerprints[case] and entry.get("tolerances") == tolerances:
            results[case] = entry["metrics"]
        else:
            jobs.append((case, prediction_file, reference_file, reader_class, list(labels), tolerances,
                         ignore_label))
    if jobs:
        for done, (case, metrics) in enumerate((workers or CaseWorkers()).measure(jobs), start=1):
            results[case] = metrics
            if progress:
                progress(done, len(jobs))
        payload = {"implementation": version, "cases": {
            case: {"fingerprint": fingerprints[case], "tolerances": tolerances, "metrics": results[case]}
            for case in cases}}
        try:
            write_text(cache_file, json.dumps(payload, indent=1))
        except OSError:
            pass  # a read-only results folder: the metrics are right, only the next run recomputes them
    return {case: results[case] for case in cases}
