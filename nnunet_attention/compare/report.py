"""The report as the code builds and reads it: dataclasses from analysis' statistics and read.py's results, read by
render.py, plots.py and the printed summary. JSON only at the file (``to_json``); its keys are report.json's
contract (tests/test_compare_report.py), so a field's JSON name is its own unless ``json_name`` says otherwise, and a
field marked ``omitted_when_none`` is absent from the file rather than null (the keys an older report lacked)."""
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Dict, List, Optional

from nnunet_attention.compare.metrics import METRICS, PRIMARY, Margins, Metric

FOREGROUND = "foreground_mean"  # the class that averages the foreground classes (analysis.with_foreground_mean)
OMIT_WHEN_NONE = {"omitted_when_none": True}


def to_json(value: Any) -> Any:
    """value as JSON-ready lists, dicts and scalars: a dataclass by its fields (or its own to_json)."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if is_dataclass(value):
        return fields_json(value)
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def fields_json(value, names=None) -> dict:
    """A dataclass's fields (those in names, in names' order; all by default) under their JSON names."""
    chosen = [f for f in fields(value) if names is None or f.name in names]
    if names is not None:
        chosen.sort(key=lambda f: names.index(f.name))
    return {f.metadata.get("json_name", f.name): to_json(getattr(value, f.name)) for f in chosen
            if not (f.metadata.get("omitted_when_none") and getattr(value, f.name) is None)}


@dataclass
class FoldsNeeded:
    """Trainings per trainer that would settle the question (statistics.folds_needed); None: no number would."""
    equivalence: Optional[int]
    exclude_zero: Optional[int]


@dataclass
class SequentialLook:
    """The k-th of K looks of grid --until-decided for one of `rows` rows: the level it spends, its repeated interval
    and outcome."""
    look: int
    looks: int
    level: float
    ci: Optional[List[float]]
    outcome: str
    method: str
    rows: int = 1


@dataclass
class MetricStatistics:
    """One dataset x configuration x class x metric (analysis.analyse_pairs): the case-level description, the
    verdict's corrected fold-level interval and outcome, and what the study could detect."""
    n_pairs: Optional[int] = None
    mean_a: Optional[float] = None
    mean_b: Optional[float] = None
    mean_difference: Optional[float] = None
    median_difference: Optional[float] = None
    wins: Optional[int] = None
    ties: Optional[int] = None
    losses: Optional[int] = None
    wilcoxon_p: Optional[float] = None
    bootstrap_ci95: Optional[List[float]] = None
    p_b_better: Optional[float] = None
    estimate: Optional[float] = None
    hierarchical_se: Optional[float] = None
    hierarchical_ci95: Optional[List[float]] = None
    df: Optional[int] = None
    t_p: Optional[float] = None
    p_holm: Optional[float] = None
    holm_family: Optional[str] = None
    ci_method: Optional[str] = None
    estimand: Optional[str] = None
    trainings_ci95: Optional[List[float]] = None
    trainings_se: Optional[float] = None
    trainings_t_p: Optional[float] = None
    correction_factor: Optional[float] = None
    n_repeats: Optional[int] = None
    design: Optional[str] = None
    validation_to_training: Optional[float] = None
    fold_correlation: Optional[float] = None
    n_folds: Optional[int] = None
    excluded_nan_pairs: Optional[int] = None
    per_fold_difference: Dict[str, float] = field(default_factory=dict)
    lost_in_folds: Dict[str, list] = field(default_factory=lambda: {"a": [], "b": []})
    outcome: Optional[str] = None
    excludes_zero: Optional[bool] = None
    margin: Optional[float] = None
    power: Optional[float] = None
    minimal_detectable_difference: Optional[float] = None
    folds_needed: Optional[FoldsNeeded] = None
    size_terciles: List[dict] = field(default_factory=list)
    worst_cases: List[dict] = field(default_factory=list)
    holds_to_correlation: Optional[float] = None
    assumed_correlation: Optional[float] = None
    correlated_bayes: Optional[Dict[str, float]] = None
    sequential: Optional[SequentialLook] = field(default=None, metadata=OMIT_WHEN_NONE)
    outcome_fixed_95: Optional[str] = field(default=None, metadata=OMIT_WHEN_NONE)

    def paired_json(self) -> dict:
        """The configuration's paired table: every statistic but the per-tercile and worst-case lists."""
        return fields_json(self, [f.name for f in fields(self) if f.name not in ("size_terciles", "worst_cases")])

    def summary_json(self) -> dict:
        return fields_json(self, SUMMARY_FIELDS)

    def verdict_json(self) -> dict:
        return {"verdict": self.outcome, **fields_json(self, VERDICT_FIELDS)}


SUMMARY_FIELDS = ["n_pairs", "mean_a", "mean_b", "mean_difference", "estimate", "bootstrap_ci95", "hierarchical_ci95",
                  "ci_method", "df", "p_b_better", "wilcoxon_p", "t_p", "p_holm", "holm_family", "n_folds", "outcome",
                  "margin", "hierarchical_se", "minimal_detectable_difference", "folds_needed", "excluded_nan_pairs",
                  "estimand", "design", "n_repeats", "correction_factor", "validation_to_training",
                  "fold_correlation", "trainings_ci95", "trainings_se", "trainings_t_p", "excludes_zero", "power",
                  "holds_to_correlation", "assumed_correlation", "correlated_bayes"]
VERDICT_FIELDS = [name for name in SUMMARY_FIELDS if name not in ("mean_a", "mean_b", "wilcoxon_p", "outcome")] + [
    "sequential", "outcome_fixed_95"]


@dataclass
class LostClass:
    """A class trainer A or B scored Dice 0 on in every case that has it, in these folds."""
    class_name: str = field(metadata={"json_name": "class"})
    folds_a: List[str]
    folds_b: List[str]
    n_folds: int


@dataclass
class Verdict:
    """One dataset x configuration: each metric's outcome on the foreground mean, and what it stands on."""
    dataset: str
    configuration: str
    metrics: Dict[str, MetricStatistics]
    warnings: List[str]
    lost_classes: List[LostClass]
    pairing: Optional[str] = field(default=None, metadata=OMIT_WHEN_NONE)  # paired (seed S) / unpaired / mixed

    def to_json(self) -> dict:
        return {**fields_json(self), "metrics": {m: s.verdict_json() for m, s in self.metrics.items()}}


@dataclass
class SummaryRow:
    """One dataset x configuration x class of the summary table and the forest plot."""
    dataset: str
    configuration: str
    class_name: str = field(metadata={"json_name": "class"})
    metrics: Dict[str, MetricStatistics]
    across: Optional[int] = field(default=None, metadata=OMIT_WHEN_NONE)  # the forest's across-datasets row

    def to_json(self) -> dict:
        return {**fields_json(self), "metrics": {m: s.summary_json() for m, s in self.metrics.items()}}


@dataclass
class AcrossDatasets:
    """One metric over the dataset x configuration rows compared (analysis.across_datasets)."""
    estimate: Optional[float]
    ci95: Optional[List[float]]
    excludes_zero: Optional[bool]
    se: Optional[float]
    df: Optional[int]
    p: Optional[float]
    tau: Optional[float]
    prediction95: Optional[List[float]]
    outcome: str
    margin: float
    weighted_estimate: Optional[float]
    weighted_ci95: Optional[List[float]]
    n_datasets: int
    datasets: List[str]
    left_out: List[str]
    method: str
    note: str


@dataclass
class Pairing:
    """Whether the two trainers' folds are pairs (read.pairing_of)."""
    design: str
    study_seeds: Dict[str, list]
    warnings: List[str]


@dataclass
class TrainerEntry:
    """One trainer's folds of one dataset x configuration: per fold and pooled mean ± std per class and metric (plain
    mappings of numbers), and what its training logs say."""
    folder: str
    folds_found: list
    parameters: Optional[int]
    mean_epoch_seconds: Optional[float]
    epochs: Optional[int]
    per_fold: Dict[str, Dict[str, Dict[str, dict]]]
    pooled: Dict[str, Dict[str, dict]]
    empty_cases: Dict[str, Dict[str, int]]


@dataclass
class ConfigurationEntry:
    """One dataset x configuration: both trainers' folds, the paired statistics per class and metric, the figures and
    the per-case rows (per_case.csv)."""
    labels: List[str]
    label_keys: Dict[str, Any]
    nsd_tolerance_mm: Dict[str, float]
    trainers: Dict[str, TrainerEntry]
    paired: Dict[str, Dict[str, MetricStatistics]]
    figures: List[str]
    per_case: Dict[str, List[dict]]
    paired_cases: List[str]
    pairing: Pairing

    @property
    def size_terciles(self) -> Dict[str, Dict[str, List[dict]]]:
        return {name: {m: s.size_terciles for m, s in by_metric.items()} for name, by_metric in self.paired.items()}

    @property
    def per_fold_difference(self) -> Dict[str, Dict[str, Dict[str, float]]]:
        return {name: {m: s.per_fold_difference for m, s in by_metric.items()}
                for name, by_metric in self.paired.items()}

    @property
    def worst_cases(self) -> List[dict]:
        dice = self.paired.get(FOREGROUND, {}).get(PRIMARY)
        return dice.worst_cases if dice else []

    def to_json(self) -> dict:
        return {**fields_json(self), "paired": {name: {m: s.paired_json() for m, s in by_metric.items()}
                                                for name, by_metric in self.paired.items()},
                "size_terciles": self.size_terciles, "per_fold_difference": self.per_fold_difference,
                "worst_cases": self.worst_cases}


@dataclass
class BestModel:
    models: List[dict]
    foreground_dice: float
    foreground_dice_postprocessed: float


@dataclass
class Ensembles:
    """nnUNetv2_find_best_configuration's answer for the two trainers (read.read_ensembles)."""
    source: str
    foreground_dice: Dict[str, float]
    ensemble_per_class: Dict[str, Dict[str, Dict[str, Optional[float]]]]
    best: BestModel


@dataclass
class DatasetSection:
    configurations: Dict[str, ConfigurationEntry]
    ensembles: Optional[Ensembles]


@dataclass
class BoundaryMetrics:
    implementation: str
    empty_convention: str


def metric_json(metric: Metric) -> dict:
    return {"title": metric.title, "higher_is_better": metric.higher_is_better,
            "tie_tolerance": metric.tie_tolerance, "decimals": metric.decimals, "unit": metric.unit,
            "default_margin": metric.default_margin}


@dataclass
class Report:
    """What compare found, B (trainers[1]) minus A (trainers[0])."""
    trainers: List[str]
    plans: str
    folds: list
    boundary_metrics: BoundaryMetrics
    missing: List[str]
    missing_datasets: List[str]
    warnings: List[str]
    note: Optional[str]
    margins: Margins
    verdict_rule: str
    verdict: List[Verdict] = field(default_factory=list)
    summary: List[SummaryRow] = field(default_factory=list)
    across_datasets: Dict[str, AcrossDatasets] = field(default_factory=dict)
    datasets: Dict[str, DatasetSection] = field(default_factory=dict)
    curves: Dict[str, Dict[str, Dict[str, Dict[str, dict]]]] = field(default_factory=dict)
    figures: List[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing

    def to_json(self) -> dict:
        return {**fields_json(self), "difference": f"{self.trainers[1]} minus {self.trainers[0]}",
                "metrics": {m: metric_json(d) for m, d in METRICS.items()}, "complete": self.complete,
                "margins": dict(self.margins)}
