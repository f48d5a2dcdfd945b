"""The metrics compare reports, each in one place: what it is called, which way is better, how it is shown, its
default equivalence margin, how it scores empty masks and where it comes from (summary.json's key or the function that
measures it on the masks).
Everything else (reading, boundary measurement and its cache, statistics, the report, the plots, the CLI's help)
reads this registry; a new metric is one entry here (plus its function, for one measured from the masks).

Each metric names its source: Dice and IoU are nnU-Net's own per case (``summary_key`` in validation/summary.json);
the others are measured from the same predictions with MONAI in physical spacing (``measure``, boundary.py). Empty
masks, as Metrics Reloaded asks to state: reference and prediction both empty score ``both_empty``; exactly one empty
scores the worst value (0 for NSD, the image's diagonal in mm for the distances), so a missed or hallucinated
structure stays in the statistics.
"""
import math
from collections.abc import Mapping
from typing import Callable, Dict, NamedTuple, Optional, Sequence

from nnunet_attention.errors import NnUNetAttentionError

DIAGONAL = "diagonal"  # one_empty of a distance: the image's diagonal in mm, the largest distance possible there


class Metric(NamedTuple):
    title: str
    higher_is_better: bool
    tie_tolerance: float
    decimals: int  # fixed decimals in the report; a CI's ends are rounded outwards to them
    unit: str  # "" or "mm"
    default_margin: float  # equivalence margin, in the metric's unit (docs/compare.md)
    both_empty: float  # the score when reference and prediction are both empty
    one_empty: object  # the score when exactly one is empty: a number, or DIAGONAL
    # from the masks: measure(prediction, reference, spacing, tolerance_mm) on (1, 1, ...) float tensors
    measure: Optional[Callable] = None
    implementation: str = "nnU-Net's validation summary.json"
    # from nnU-Net's validation summary.json: the key of its per-class entry (NaN there: both masks empty)
    summary_key: Optional[str] = None

    @property
    def source(self) -> str:
        return "summary.json" if self.summary_key else "masks"


def _nsd(prediction, reference, spacing: Sequence[float], tolerance: float) -> float:
    from monai.metrics import compute_surface_dice

    return float(compute_surface_dice(prediction, reference, [float(tolerance)], include_background=True,
                                      spacing=list(spacing), use_subvoxels=True).item())


def _hd95(prediction, reference, spacing: Sequence[float], tolerance: float) -> float:
    from monai.metrics import compute_hausdorff_distance

    return float(compute_hausdorff_distance(prediction, reference, include_background=True, percentile=95,
                                            spacing=list(spacing)).item())


def _assd(prediction, reference, spacing: Sequence[float], tolerance: float) -> float:
    from monai.metrics import compute_average_surface_distance

    return float(compute_average_surface_distance(prediction, reference, include_background=True, symmetric=True,
                                                  spacing=list(spacing)).item())


METRICS: Dict[str, Metric] = {
    "dice": Metric("Dice", True, 1e-3, 3, "", 0.01, 1.0, 0.0, summary_key="Dice"),
    "iou": Metric("IoU", True, 1e-3, 3, "", 0.01, 1.0, 0.0, summary_key="IoU"),
    "nsd": Metric("NSD", True, 1e-3, 3, "", 0.01, 1.0, 0.0, _nsd,
                  "compute_surface_dice(use_subvoxels=True)"),
    "hd95": Metric("HD95 (mm)", False, 1e-2, 2, "mm", 1.0, 0.0, DIAGONAL, _hd95,
                   "compute_hausdorff_distance(percentile=95, directed=False)"),
    "assd": Metric("ASSD (mm)", False, 1e-2, 2, "mm", 0.5, 0.0, DIAGONAL, _assd,
                   "compute_average_surface_distance(symmetric=True)"),
}
PRIMARY = "dice"  # the metric lost classes and the headline are judged by
DEFAULT_MARGINS = {name: metric.default_margin for name, metric in METRICS.items()}
BOUNDARY = {name: metric for name, metric in METRICS.items() if metric.source == "masks"}
FROM_SUMMARY = {name: metric for name, metric in METRICS.items() if metric.source == "summary.json"}


class Margins(Mapping):
    """Equivalence margin per metric, in the metric's unit: the defaults with the given ones in place. Built once
    where a margin enters (the CLI, a Python caller of compare, the demo or the grid); what receives a Margins reads
    it and checks nothing."""

    def __init__(self, given: Optional[Mapping[str, float]] = None):
        for metric, value in (given or {}).items():
            if metric not in METRICS or not 0 < value < math.inf:
                raise NnUNetAttentionError(f"--margin takes METRIC=VALUE with METRIC one of {', '.join(METRICS)} and a "
                                           f"positive, finite VALUE in the metric's unit, e.g. --margin dice=0.02; got "
                                           f"{metric}={value}")
        self._values = {**DEFAULT_MARGINS, **(given or {})}

    @classmethod
    def of(cls, margins: Optional[Mapping[str, float]]) -> "Margins":
        """margins as they are if already checked, else checked (None: the defaults)."""
        return margins if isinstance(margins, cls) else cls(margins)

    def __getitem__(self, metric: str) -> float:
        return self._values[metric]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Margins({self._values})"


def margin_examples() -> str:
    """'dice=0.01 nsd=0.01 hd95=1 (mm) ...': the defaults as --margin would take them."""
    return " ".join(f"{name}={metric.default_margin:g}" + (f" ({metric.unit})" if metric.unit else "")
                    for name, metric in METRICS.items())
