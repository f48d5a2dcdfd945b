"""Boundary metrics per case and class, in physical spacing, from the files nnU-Net already wrote.

Which metrics, their functions and their empty-mask rules are the registry's (metrics.BOUNDARY): NSD (normalised
surface Dice) at a tolerance in mm, HD95 and ASSD in mm, computed with MONAI: maintained, on PyPI, in physical
spacing; its surface Dice with ``use_subvoxels=True`` is DeepMind's surfel-based NSD (the ``surface-distance`` code
most MSD-era papers used, which is not maintained as a package). HD95 is MONAI's
``compute_hausdorff_distance(percentile=95, directed=False)``: the larger of the two directed 95th percentiles of
the surface distances. Hausdorff implementations disagree, so the report names this one (``implementation``).

nnU-Net's ignore label: voxels the reference marks as ignore are taken out of both masks before measuring, as
nnU-Net's Dice leaves them out of TP, FP and FN; a prediction that differs from the reference only there scores as a
perfect one. Each case also records the reference structure's volume in mm^3 (compare groups cases by it).

Per fold, the results are cached in ``nnunet_attention_boundary_metrics.json`` beside nnU-Net's ``summary.json``;
a case is recomputed when its prediction or reference file changes (size or modification time), or the tolerance,
the metrics or the implementation do.
"""
import json
import multiprocessing
import os
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nnunet_attention.compare.metrics import BOUNDARY, DIAGONAL
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.files import write_text

CACHE_FILE = "nnunet_attention_boundary_metrics.json"
CACHE_FORMAT = 2  # 2: ignore label honoured, reference volume recorded
EMPTY_CONVENTION = ("both empty: " + ", ".join(f"{m.title} {m.both_empty:g}" for m in BOUNDARY.values())
                    + "; exactly one empty: " + ", ".join(
                        f"{m.title} " + ("the image diagonal" if m.one_empty == DIAGONAL else f"{m.one_empty:g}")
                        for m in BOUNDARY.values()))
LabelOrRegion = Union[int, Tuple[int, ...]]


def implementation() -> str:
    from importlib.metadata import version

    return f"MONAI {version('monai')}: " + ", ".join(f"{m.implementation} for {m.title}" for m in BOUNDARY.values())


def _crop_to_union(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to their union's bounding box plus one voxel: distances stay the same, work shrinks."""
    where = np.argwhere(a | b)
    low = np.maximum(where.min(0) - 1, 0)
    high = np.minimum(where.max(0) + 2, a.shape)
    box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
    return a[box], b[box]


def mask_metrics(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float], tolerance: float) -> dict:
    """Every boundary metric (by name) and "empty" for two boolean masks of the same shape; spacing in mm per array
    axis; empty is None, "both", "reference" or "prediction" (the registry's empty-mask rules)."""
    import torch

    has_prediction, has_reference = bool(prediction.any()), bool(reference.any())
    if not has_prediction and not has_reference:
        return {**{name: m.both_empty for name, m in BOUNDARY.items()}, "empty": "both"}
    if not (has_prediction and has_reference):
        diagonal = float(np.sqrt(np.sum((np.array(prediction.shape) * np.array(spacing, dtype=float)) ** 2)))
        return {**{name: diagonal if m.one_empty == DIAGONAL else m.one_empty for name, m in BOUNDARY.items()},
                "empty": "prediction" if has_reference else "reference"}
    prediction, reference = _crop_to_union(prediction, reference)
    p = torch.from_numpy(np.ascontiguousarray(prediction[None, None], dtype=np.float32))
    r = torch.from_numpy(np.ascontiguousarray(reference[None, None], dtype=np.float32))
    spacing = [float(s) for s in spacing]
    with warnings.catch_warnings():  # MONAI's own deprecation notices, not about these inputs
        warnings.simplefilter("ignore", FutureWarning)
        return {**{name: m.measure(p, r, spacing, tolerance) for name, m in BOUNDARY.items()}, "empty": None}


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
    """case -> key -> {each boundary metric, "empty", "reference_mm3"} for the cases' predictions in
    prediction_folder against reference_folder (nnUNet_preprocessed/DatasetX/gt_segmentations), cached in
    prediction_folder/CACHE_FILE; measured by workers (default: in this process)."""
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
