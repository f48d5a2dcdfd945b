"""The report's figures, one per dataset x configuration and kind (a 300-dpi PNG and a PDF: figures.save_figure),
drawn with matplotlib's object API (no pyplot, no backend switch) to fit a journal page (PAGE_WIDTH) with 7-9 pt text.
Every point is drawn as a marker, so a series of one epoch or one case still shows."""
import os
import textwrap
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from nnunet_attention.compare.metrics import METRICS, PRIMARY
from nnunet_attention.compare.read import CURVE_SERIES
from nnunet_attention.compare.report import FOREGROUND, AcrossDatasets, MetricStatistics, SummaryRow

CURVE_TITLES = {"train_losses": ("training loss", "loss"), "val_losses": ("validation loss", "loss"),
                "mean_fg_dice": ("pseudo Dice (validation patches)", "mean foreground Dice"),
                "ema_fg_dice": ("pseudo Dice, moving average", "mean foreground Dice")}
COLOURS = ("tab:blue", "tab:orange")
FOREST_FILE = "forest.png"
PAGE_WIDTH = 7.1  # inches: a journal's two-column width; no figure is wider, so its text prints at the size set


def _panel_width(columns: int, wanted: float) -> float:
    return min(wanted, PAGE_WIDTH / columns)


def _few_ticks(ax, axis: str = "both"):
    """At most five labelled ticks, so that labels of a narrow panel never run into each other."""
    ax.locator_params(axis=axis, nbins=4)
    ax.tick_params(labelsize=7)


def _trainer_label(role: str, trainer: str) -> str:
    """An axis label naming the trainer, broken where CamelCase allows so that it fits a narrow panel."""
    import re

    return f"{role}\n" + "\n".join(textwrap.wrap(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", trainer), 16)).replace(" ", "")


def _figure(columns: int, rows: int, width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * columns, height * rows), layout="constrained")
    return fig, fig.subplots(rows, columns, squeeze=False)


def _title(fig, text: str, width: float):
    fig.suptitle(textwrap.fill(text, max(30, int(width * 11))), fontsize=9)


def _save(fig, output_dir: str, name: str) -> str:
    """name (a .png) and its PDF in output_dir; returns name."""
    from nnunet_attention.figures import save_figure

    save_figure(fig, os.path.join(output_dir, name))
    return name


ROW_FIGURES = ("metrics", "paired_differences", "scatter", "size", "curves")  # per dataset x configuration, in order


def figure_name(kind: str, prefix: str) -> str:
    return f"{kind}_{prefix}.png"


def row_figures(prefix: str) -> List[str]:
    """The names of one dataset x configuration's figures (plot_row draws them under these names)."""
    return [figure_name(kind, prefix) for kind in ROW_FIGURES]


def plot_row(prefix: str, table: pd.DataFrame, paired: pd.DataFrame, classes: Sequence[str],
             terciles: Dict[tuple, List[dict]], trainers: Sequence[str], curves: Dict[str, Dict[str, dict]],
             output_dir: str) -> List[str]:
    """One dataset x configuration's figures (row_figures) from its slices of the long table and of the pairs."""
    return [plot_metrics(prefix, table, classes, trainers, output_dir),
            plot_paired_differences(prefix, paired, classes, trainers, output_dir),
            plot_scatter(prefix, paired, classes, trainers, output_dir),
            plot_size_terciles(prefix, terciles, classes, trainers, output_dir),
            plot_curves(prefix, curves, trainers, output_dir)]


def plot_metrics(prefix: str, table: pd.DataFrame, classes: Sequence[str], trainers: Sequence[str],
                 output_dir: str) -> str:
    """Per metric (rows) and class (columns): box and points of both trainers, each case's two values joined (the
    data are pairs)."""
    width = _panel_width(len(classes), 3.2)
    fig, axes = _figure(len(classes), len(METRICS), width, 2.9)
    for i, (metric, (title, *_)) in enumerate(METRICS.items()):
        for ax, name in zip(axes[i], classes):
            rows = table[(table["metric"] == metric) & (table["class"] == name)]
            wide = rows.pivot_table(index=["fold", "case"], columns="trainer", values="value", aggfunc="first")
            wide = wide.reindex(columns=list(trainers))
            ax.boxplot([wide[t].dropna().to_numpy() for t in trainers], showfliers=False, widths=0.35)
            both = wide.dropna()
            for a, b in both.to_numpy():
                ax.plot([1.2, 1.8], [a, b], color="grey", lw=0.5, alpha=0.5)
            for j, t in enumerate(trainers, start=1):
                values = wide[t].dropna().to_numpy()
                ax.scatter(np.full(len(values), 1.2 if j == 1 else 1.8), values, s=8, alpha=0.7, color=COLOURS[j - 1])
            ax.set_xticks([1, 2], [_trainer_label("A", trainers[0]), _trainer_label("B", trainers[1])], fontsize=7)
            ax.set_ylabel(title, fontsize=8)
            _few_ticks(ax, "y")
            ax.set_title(name, fontsize=9)
    _title(fig, f"{prefix}: one point per validation case, its two values joined", width * len(classes))
    return _save(fig, output_dir, figure_name("metrics", prefix))


def plot_paired_differences(prefix: str, paired: pd.DataFrame, classes: Sequence[str], trainers: Sequence[str],
                            output_dir: str) -> str:
    """Per metric: each case's B - A per class, the mean as a bar."""
    width = min(PAGE_WIDTH, 1.8 + 1.4 * len(classes))
    fig, axes = _figure(1, len(METRICS), width, 2.6)
    jitter = np.random.default_rng(0)
    for ax, (metric, (title, higher, *_)) in zip(axes[:, 0], METRICS.items()):
        for i, name in enumerate(classes, start=1):
            d = paired[(paired["metric"] == metric) & (paired["class"] == name)]["difference"].dropna().to_numpy()
            ax.scatter(i + jitter.uniform(-0.15, 0.15, len(d)), d, s=12, alpha=0.7)
            if d.size:
                ax.hlines(d.mean(), i - 0.3, i + 0.3, color="k")
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(1, len(classes) + 1), list(classes), fontsize=8)
        ax.set_ylabel(f"{title}: B - A\n({'above' if higher else 'below'} 0: B better)", fontsize=7)
        _few_ticks(ax, "y")
    _title(fig, f"{prefix}: B - A per validation case (B = {trainers[1]}, A = {trainers[0]}); bar: the mean",
           width)
    return _save(fig, output_dir, figure_name("paired_differences", prefix))


def plot_scatter(prefix: str, paired: pd.DataFrame, classes: Sequence[str], trainers: Sequence[str],
                 output_dir: str) -> str:
    """Per metric (rows) and class (columns): each case's A against B, with the identity line."""
    width = _panel_width(len(classes), 3.0)
    fig, axes = _figure(len(classes), len(METRICS), width, width)
    for i, (metric, (title, *_)) in enumerate(METRICS.items()):
        for ax, name in zip(axes[i], classes):
            row = paired[(paired["metric"] == metric) & (paired["class"] == name)].dropna(subset=["a", "b"])
            ax.scatter(row["a"], row["b"], s=12, alpha=0.7)
            values = np.concatenate([row["a"].to_numpy(), row["b"].to_numpy()])
            low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
            ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--")
            ax.set_xlabel(f"{title}, A = {trainers[0]}", fontsize=7)
            ax.set_ylabel(f"{title}, B = {trainers[1]}", fontsize=7)
            _few_ticks(ax)
            ax.set_title(name, fontsize=9)
    _title(fig, f"{prefix}: per case, A against B (dashed: equal)", width * len(classes))
    return _save(fig, output_dir, figure_name("scatter", prefix))


def plot_size_terciles(prefix: str, terciles: Dict[tuple, List[dict]], classes: Sequence[str],
                       trainers: Sequence[str], output_dir: str) -> str:
    """Per metric (rows) and class (columns): mean B - A in the small, medium and large thirds of the reference
    structures, with error bars of one standard error."""
    width = _panel_width(len(classes), 3.0)
    fig, axes = _figure(len(classes), len(METRICS), width, 2.6)
    for i, (metric, (title, *_)) in enumerate(METRICS.items()):
        for ax, name in zip(axes[i], classes):
            groups = terciles.get((name, metric), [])
            errors = [g.get("se_difference") or 0.0 for g in groups]
            ax.bar(range(len(groups)), [g["mean_difference"] for g in groups], yerr=errors, capsize=3,
                   color="tab:purple")
            ax.set_xticks(range(len(groups)), [f"{g['tercile']}\nn={g['n']}" for g in groups], fontsize=7)
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_ylabel(f"mean {title} B - A", fontsize=7)
            _few_ticks(ax, "y")
            ax.set_title(f"{name}", fontsize=9)
    _title(fig, f"{prefix}: B - A by size of the reference structure (terciles of its volume; bars: ±1 standard "
                f"error); B = {trainers[1]}, A = {trainers[0]}", width * len(classes))
    return _save(fig, output_dir, figure_name("size", prefix))


def plot_curves(prefix: str, curves: Dict[str, Dict[str, dict]], trainers: Sequence[str], output_dir: str) -> str:
    """Learning curves from nnU-Net's logging: per fold thin lines with markers, the mean over folds thick."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure(2, 2, PAGE_WIDTH / 2, 2.6)
    for ax, series in zip(axes.ravel(), CURVE_SERIES):
        for colour, trainer in zip(COLOURS, trainers):
            runs = [c[series] for c in curves.get(trainer, {}).values() if c.get(series)]
            for run in runs:
                ax.plot(range(len(run)), run, color=colour, lw=0.6, alpha=0.5, marker=".", ms=4)
            if runs:
                length = min(len(run) for run in runs)
                ax.plot(range(length), np.mean([run[:length] for run in runs], axis=0), color=colour, lw=2,
                        marker="o", ms=5, label=f"{trainer} (mean of {len(runs)} fold{'s' if len(runs) > 1 else ''})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        title, ylabel = CURVE_TITLES[series]
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
    if axes[0, 0].get_legend_handles_labels()[0]:
        axes[0, 0].legend(fontsize=7)
    _title(fig, f"{prefix}: learning curves from nnU-Net's checkpoint logging", PAGE_WIDTH)
    return _save(fig, output_dir, figure_name("curves", prefix))


def forest_label(row: SummaryRow) -> str:
    """A readable row label: the dataset without its DatasetNNN_ prefix, the configuration, the class (the
    foreground mean as "all classes"), and the row's n."""
    import re

    if row.across:
        return f"across {row.across} datasets (mean of datasets)"
    dataset = re.sub(r"^Dataset\d+_", "", row.dataset)
    name = "all classes" if row.class_name == FOREGROUND else row.class_name
    dice = row.metrics[PRIMARY]
    return f"{dataset} {row.configuration} {name} ({dice.n_folds or 0} folds, {dice.n_pairs or 0} cases)"


def plot_forest(rows: List[SummaryRow], trainers: Sequence[str], output_dir: str,
                across: Optional[Dict[str, AcrossDatasets]] = None) -> str:
    """FOREST_FILE (forest_figure) in output_dir; with across (analysis.across_datasets) from two datasets on, its
    random-effects mean as the last row."""
    return _save(forest_figure(rows + across_row(across or {}), trainers), output_dir, FOREST_FILE)


def across_row(across: Dict[str, AcrossDatasets]) -> List[SummaryRow]:
    """The across-datasets verdict as one forest row (none below two datasets)."""
    if not across or min(a.n_datasets for a in across.values()) < 2:
        return []
    return [SummaryRow("", "", FOREGROUND, {m: MetricStatistics(estimate=a.estimate, hierarchical_ci95=a.ci95,
                                                                outcome=a.outcome, margin=a.margin)
                                            for m, a in across.items()},
                       across=next(iter(across.values())).n_datasets)]


def forest_figure(rows: List[SummaryRow], trainers: Sequence[str]):
    """A forest plot per metric (columns): one row per dataset x configuration x class (all classes in black), the
    verdict's estimate B - A with its 95% t interval (thick; the case bootstrap, which treats the trainings as fixed,
    stays out of it: report.md's tables have it), 0 and the ±margin band (always inside the axis), the outcome at
    the right, and under each axis which side favours B (flipped for HD95, where lower is better).
    rows: report.json's summary rows."""
    height = 1.0 + 0.22 * max(len(rows), 1)
    columns = 2
    fig, axes = _figure(columns, -(-len(METRICS) // columns), PAGE_WIDTH / columns, height)
    labels = [forest_label(r) for r in rows]
    positions = np.arange(len(rows))[::-1]
    for ax, (metric, (title, higher_is_better, *_)) in zip(axes.ravel(), METRICS.items()):
        stats = [r.metrics.get(metric, MetricStatistics()) for r in rows]
        margin = next((s.margin for s in stats if s.margin is not None), None)
        if margin is not None:
            ax.axvspan(-margin, margin, color="tab:green", alpha=0.15, lw=0)
        ax.axvline(0, color="grey", lw=0.8)
        for y, s, row in zip(positions, stats, rows):
            colour = "darkred" if row.across else "black" if row.class_name == FOREGROUND else "tab:blue"
            if s.hierarchical_ci95:
                ax.plot(s.hierarchical_ci95, [y, y], color=colour, lw=3.0, solid_capstyle="butt")
            estimate = s.estimate
            if estimate is not None:
                ax.plot(estimate, y, "D", color=colour, ms=5)
        if margin is not None:
            low, high = ax.get_xlim()
            ax.set_xlim(min(low, -1.5 * margin), max(high, 1.5 * margin))
        _few_ticks(ax, "x")
        ax.set_yticks(positions, labels if ax in axes[:, 0] else [""] * len(rows), fontsize=7)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        favours = ("← A better    B better →" if higher_is_better else "← B better    A better →")
        ax.set_xlabel(f"{title}: B − A" + (f" (green: ±{margin:g})" if margin is not None else "") + f"\n{favours}",
                      fontsize=8)
        outcomes = ax.twinx()
        outcomes.set_ylim(ax.get_ylim())
        outcomes.set_yticks(positions, [s.outcome or "n/a" for s in stats], fontsize=7)
        for tick, row in zip(outcomes.get_yticklabels(), rows):
            tick.set_fontweight("bold" if row.class_name == FOREGROUND else "normal")
    _title(fig, f"B = {trainers[1]} minus A = {trainers[0]}: estimate with the verdict's 95% corrected t interval "
                f"over folds; green: the equivalence band; outcome at the right", PAGE_WIDTH)
    return fig
