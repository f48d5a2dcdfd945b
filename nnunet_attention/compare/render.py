"""The report as markdown (report.md) and as the glance a command prints: formatting only (assemble.py builds the
Report)."""
import math
from typing import Dict, List, Optional

import numpy as np

from nnunet_attention.compare.metrics import METRICS, PRIMARY
from nnunet_attention.compare.plots import FOREST_FILE
from nnunet_attention.compare.report import (FOREGROUND, AcrossDatasets, ConfigurationEntry, Ensembles,
                                             MetricStatistics, Report, SummaryRow, Verdict)
from nnunet_attention.compare.statistics import ALPHA


def _fmt(value, signed: bool = False, decimals: Optional[int] = None) -> str:
    """A value with the metric's fixed decimals (three significant digits without them), a sign on differences; n/a
    for a missing value."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if decimals is None:
        return f"{value:+.3g}" if signed else f"{value:.3g}"
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def _p(value) -> str:
    return "n/a" if value is None else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _ci(ci, decimals: Optional[int] = None) -> str:
    """A CI's ends; with fixed decimals rounded outwards, so that a printed end never looks inside a margin the CI
    crosses (0.01004 prints +0.011, not +0.010 inside ±0.01)."""
    if not ci:
        return "n/a"
    if decimals is None:
        return f"{_fmt(ci[0], True)} to {_fmt(ci[1], True)}"
    scale = 10 ** decimals
    low, high = math.floor(ci[0] * scale + 1e-9) / scale, math.ceil(ci[1] * scale - 1e-9) / scale
    return f"{_fmt(low, True, decimals)} to {_fmt(high, True, decimals)}"


def class_label(name: str) -> str:
    return "all classes (mean)" if name == FOREGROUND else name


def render_markdown(report: Report) -> str:
    a, b = report.trainers
    bm = report.boundary_metrics
    lines = [f"# {b} vs {a}", ""]
    lines += _verdict_markdown(report)
    lines += [f"Plans `{report.plans}`, folds {report.folds}. Differences are **{b} minus {a}** (B − A), per "
              f"validation case, paired by case. Boundary metrics: {bm.implementation}. Empty masks: "
              f"{bm.empty_convention}.",
              "Wins count the cases where B is better (" + ", ".join(
                  f"{'higher' if m.higher_is_better else 'lower'} {m.title}" for m in METRICS.values())
              + "); ties are |difference| ≤ "
              + ", ".join(f"{m.title} {m.tie_tolerance}" for m in METRICS.values()) + ".", ""]
    if report.missing_datasets:
        lines += ["**Datasets not found** (left out of the table and the correction): "
                  + ", ".join(f"`{d}`" for d in report.missing_datasets), ""]
    if not report.complete:
        lines += ["**Incomplete**: these results are missing, the report covers what exists:", ""]
        lines += [f"- `{m}`" for m in report.missing if m not in report.missing_datasets] + [""]
    lines += _summary_markdown(report)
    for name, section in report.datasets.items():
        lines += [f"## {name}", ""]
        for configuration, entry in section.configurations.items():
            lines += _configuration_markdown(configuration, entry)
        lines += _ensembles_markdown(section.ensembles, a, b)
    return "\n".join(lines)


def _verdict_markdown(report: Report) -> List[str]:
    """The first screen (each verdict's table, the forest plot), then each metric's details and the rule."""
    lines = ["## Verdict", ""]
    lines += across_datasets_lines(report.across_datasets)
    for v in report.verdict:
        lines += glance_markdown(v, report.trainers)
    if FOREST_FILE in report.figures:
        lines += [f"![forest]({FOREST_FILE})", ""]
    if report.note:
        lines += [f"> {report.note}", ""]
    lines += ["## The verdict in detail", ""]
    for v in report.verdict:
        lines.append(f"**{v.dataset} {v.configuration}** (B = {report.trainers[1]} against "
                     f"A = {report.trainers[0]}, all classes):")
        lines.append("")
        dice = v.metrics.get(PRIMARY)
        if dice and dice.sequential:
            look = dice.sequential
            lines.append(f"- Sequential: look {look.look} of {look.looks}: every metric judged at the level "
                         f"this look spends ({look.level:.4g}; Dice's repeated interval "
                         f"{_ci(look.ci, METRICS[PRIMARY].decimals)}; the 95% intervals below are "
                         f"descriptive); Dice's outcome at 95% without the looks: {dice.outcome_fixed_95}.")
        for metric, m in v.metrics.items():
            decimals = METRICS[metric].decimals
            lines.append(f"- {headline_sentence(METRICS[metric].title, m, decimals)}")
            lines.append(f"  - {verdict_sentence(m, decimals)}")
        lines.append("")
    return lines + [f"Rule: {report.verdict_rule}", ""]


GLANCE_COLUMNS = ("metric", "outcome", "margin", "B − A", "95% CI")
GLANCE_WIDTH = 120


def _headline(verdict: Verdict) -> MetricStatistics:
    """The metric whose design, size and estimand the glance states (Dice, else the first)."""
    return verdict.metrics.get(PRIMARY) or next(iter(verdict.metrics.values()))


def glance_title(verdict: Verdict, trainers) -> str:
    a, b = trainers
    return f"{verdict.dataset} {verdict.configuration}: B = {b} against A = {a}"


def glance_rows(verdict: Verdict) -> List[tuple]:
    """One row per metric of a verdict: outcome, margin, B − A and the verdict's 95% CI (or a sequential look's
    repeated interval, which is what the outcome then stands on)."""
    rows = []
    for metric, m in verdict.metrics.items():
        decimals = METRICS[metric].decimals
        ci = m.sequential.ci if m.sequential else m.hierarchical_ci95
        rows.append((METRICS[metric].title, m.outcome or "n/a", f"±{m.margin:g}", _fmt(m.estimate, True, decimals),
                     _ci(ci, decimals)))
    return rows


def glance_design(verdict: Verdict) -> List[str]:
    """The design and size the outcomes stand on (and the sequential look, when there is one)."""
    dice = _headline(verdict)
    design = ", ".join(part for part in (dice.design, verdict.pairing) if part)
    cases = dice.n_pairs if dice.n_pairs is not None else "n/a"
    lines = [f"design: {design}; {dice.n_folds} training(s) per trainer, {cases} validation cases"]
    if dice.sequential:
        look = dice.sequential
        shared = f", {ALPHA:.0%} shared over {look.rows} rows" if look.rows > 1 else ""
        lines.append(f"look {look.look} of {look.looks} of a sequential study: judged at level {look.level:.4g}"
                     f"{shared}, the CI is its repeated interval")
    return lines


def glance_footer(verdict: Verdict) -> List[str]:
    import textwrap

    answers = (f"answers: {_headline(verdict).estimand}; inconclusive: this study cannot tell, which is not "
               f"\"no difference\"")
    return ([f"  warning: {w}" for w in verdict.warnings]
            + textwrap.wrap(answers, GLANCE_WIDTH, initial_indent="  ", subsequent_indent="  "))


def glance_text(verdict: Verdict, trainers) -> List[str]:
    """The printed summary of one dataset x configuration: header, an aligned table, warnings, what it answers."""
    rows = [GLANCE_COLUMNS] + glance_rows(verdict)
    widths = [max(len(r[i]) for r in rows) for i in range(len(GLANCE_COLUMNS))]
    table = ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    return ([f"verdict {glance_title(verdict, trainers)}"] + [f"  {line}" for line in glance_design(verdict)] + table
            + glance_footer(verdict))


def glance_markdown(verdict: Verdict, trainers) -> List[str]:
    """report.md's first screen for one dataset x configuration: the printed summary as a markdown table."""
    lines = [f"**{glance_title(verdict, trainers)}**", ""] + [f"{line}  " for line in glance_design(verdict)] + [""]
    lines += ["| " + " | ".join(GLANCE_COLUMNS) + " |", "|---" * len(GLANCE_COLUMNS) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in glance_rows(verdict)]
    return lines + [""] + [line.strip() for line in glance_footer(verdict)] + [""]


def across_datasets_lines(across_datasets: Dict[str, AcrossDatasets]) -> List[str]:
    """report.md's first lines when two or more dataset x configuration rows were compared."""
    across = {m: a for m, a in across_datasets.items() if a.n_datasets >= 2}
    if not across:
        return []
    n = next(iter(across.values())).n_datasets
    lines = [f"**Across {n} datasets** (the method across tasks: the unweighted mean of one value per dataset, "
             f"with a t interval from the spread of those values):", ""]
    for metric, a in across.items():
        decimals = METRICS[metric].decimals
        lines.append(f"- **{METRICS[metric].title}: {_outcome_words(a.outcome, a.margin)}** — B − A "
                     f"{_fmt(a.estimate, True, decimals)} (95% CI {_ci(a.ci95, decimals)})"
                     f"{_within_margin(a.outcome, a.margin, a.excludes_zero, a.estimate)}, spread "
                     f"of true differences between datasets (tau, Paule-Mandel) {_fmt(a.tau, False, decimals)}")
    return lines + [f"- {next(iter(across.values())).note}", ""]


def _outcome_words(outcome: str, margin: float) -> str:
    if outcome == "inconclusive":
        return f"inconclusive at ±{margin:g} (this study cannot tell)"
    return outcome + (f" within ±{margin:g}" if outcome == "equivalent" else "")


def _within_margin(outcome: str, margin: float, excludes_zero: Optional[bool], estimate: Optional[float]) -> str:
    """What an equivalent CI that excludes 0 also says, and a better/worse whose estimate lies inside the margin."""
    if outcome == "equivalent" and excludes_zero:
        return f": different from 0 but within ±{margin:g}"
    if outcome in ("better", "worse") and estimate is not None and abs(estimate) < margin:
        return f": the estimate lies inside ±{margin:g}, so the difference may not matter"
    return ""


def headline_sentence(title: str, m: MetricStatistics, decimals: Optional[int] = None) -> str:
    """The verdict in plain words with its n, e.g. "Dice: equivalent within ±0.05 — B − A −0.005 (95% CI −0.040
    to +0.030), 3 trainings per trainer, 12 cases"; a CI inside the margin that excludes 0 says both."""
    return (f"**{title}: {_outcome_words(m.outcome, m.margin)}** — B − A "
            f"{_fmt(m.estimate, True, decimals)} (95% CI {_ci(m.hierarchical_ci95, decimals)})"
            f"{_within_margin(m.outcome, m.margin, m.excludes_zero, m.estimate)}, {m.n_folds} training(s) per "
            f"trainer, {m.n_pairs if m.n_pairs is not None else 'n/a'} cases")


def verdict_sentence(m: MetricStatistics, decimals: Optional[int] = None) -> str:
    """The details behind one metric's outcome: the test, what the study could detect (level and power), what these
    trainings alone show, and, when it cannot tell, the trainings that would settle it."""
    factor = m.correction_factor
    text = (f"corrected t on the per-fold differences ({m.df if m.df is not None else 'no'} degrees "
            f"of freedom" + (f", variance x{factor:.2f} for the training cases the folds share" if factor else "")
            + f"): p {_p(m.t_p)}, Holm-adjusted {_p(m.p_holm)}; ")
    detectable = m.minimal_detectable_difference
    text += ("the study could detect " + (f"a difference of {_fmt(detectable, False, decimals)} or more (5% level, "
                                          f"{m.power:.0%} power)"
                                          if detectable is not None else "nothing: fewer than 2 folds paired"))
    if m.trainings_ci95:
        text += (f"; these trainings alone (folds as independent, no correction: a description, not the verdict) "
                 f"95% CI {_ci(m.trainings_ci95, decimals)}")
    if m.outcome == "inconclusive":
        needed = m.folds_needed
        estimate = m.estimate
        if needed.equivalence:
            equivalence = (f"about {needed.equivalence} trainings per trainer to show equivalence in 80% of such "
                           f"studies (simulated at the observed difference and spread: an estimate)")
        elif estimate is not None and abs(estimate) < m.margin:
            equivalence = ("no number of trainings on this dataset shows equivalence at this spread (the part of "
                           "the variance that comes from the data every training shares stays): a wider margin, "
                           "more cases or more datasets")
        else:
            equivalence = "equivalence cannot be shown at the observed difference"
        settle = [equivalence, f"about {needed.exclude_zero} to exclude 0 in 80% of such studies"
                  if needed.exclude_zero else None]
        text += f"; {m.n_folds} fold(s) paired, " + (
            "; ".join(t for t in settle if t) if m.hierarchical_se is not None else
            "train at least 2 folds per trainer (two folds give 1 degree of freedom: only a large, consistent "
            "difference shows)")
    if m.holds_to_correlation is not None and m.assumed_correlation is not None:
        text += ("; inconclusive at any larger fold correlation" if m.outcome == "inconclusive" else
                 f"; the outcome stands while the folds' differences correlate up to {m.holds_to_correlation:.2f} "
                 f"(the correction assumes {m.assumed_correlation:.2f})")
    if m.correlated_bayes:
        b = m.correlated_bayes
        text += (f"; correlated Bayesian t (a second reading, not the verdict): P(B worse beyond ±{m.margin:g}) "
                 f"{b['p_worse']:.2f}, P(within) {b['p_equivalent']:.2f}, P(B better beyond) {b['p_better']:.2f}")
    if m.excluded_nan_pairs:
        text += f"; {m.excluded_nan_pairs} pair(s) without a value left out"
    return text + "."


def _summary_markdown(report: Report) -> List[str]:
    margins = ", ".join(f"{METRICS[k].title} ±{v:g}" for k, v in report.margins.items())
    lines = ["## Summary", "",
             "B − A is the mean of the per-fold mean differences with its 95% corrected t interval (the verdict's); "
             "p Holm is the t test's p adjusted within its family: the headline rows of a metric (all classes, every "
             "dataset × configuration) form one family, the per-class rows another. Outcomes by the rule above, "
             f"margins {margins}.", "",
             "Headline (all classes):", "",
             "| dataset | configuration | metric | trainings | cases | A | B | B − A (95% CI) | p Holm | outcome |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += _summary_rows([r for r in report.summary if r.class_name == FOREGROUND], with_class=False)
    lines += ["", "Per class:", "",
              "| dataset | configuration | class | metric | cases | A | B | B − A (95% CI) | p Holm | outcome |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    lines += _summary_rows([r for r in report.summary if r.class_name != FOREGROUND], with_class=True)
    excluded = [f"{r.dataset} {r.configuration} {r.class_name} {METRICS[m].title}: {s.excluded_nan_pairs}"
                for r in report.summary for m, s in r.metrics.items() if s.excluded_nan_pairs]
    if excluded:
        lines += ["", "Pairs left out because one trainer has no value (excluded_nan_pairs): " + "; ".join(excluded)]
    return lines + [""]


def _summary_rows(rows: List[SummaryRow], with_class: bool) -> List[str]:
    lines = []
    for row in rows:
        for metric, definition in METRICS.items():
            s, d = row.metrics[metric], definition.decimals
            cells = [row.dataset, row.configuration, *([row.class_name] if with_class else []),
                     definition.title, *([] if with_class else [str(s.n_folds)]),
                     str(s.n_pairs), _fmt(s.mean_a, False, d), _fmt(s.mean_b, False, d),
                     f"{_fmt(s.estimate, True, d)} ({_ci(s.hierarchical_ci95, d)})", _p(s.p_holm),
                     s.outcome or "n/a"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _configuration_markdown(configuration: str, entry: ConfigurationEntry) -> List[str]:
    tolerances = ", ".join(f"{k} {v} mm" for k, v in entry.nsd_tolerance_mm.items())
    lines = [f"### {configuration}", "", f"NSD tolerance: {tolerances}.", "",
             "Per class, mean ± std over validation cases (Dice per fold is nnU-Net's own mean from summary.json):",
             ""]
    folds = sorted({f for t in entry.trainers.values() for f in t.per_fold}, key=str)
    lines += ["| trainer | class | metric | " + " | ".join(f"fold {f}" for f in folds) + " | pooled | empty cases "
              "(both / ref only / pred only) |", "|---|---|---|" + "---|" * (len(folds) + 2)]
    for trainer, t in entry.trainers.items():
        for label in entry.labels:
            empty = t.empty_cases[label]
            for metric, m in METRICS.items():
                cells = [f"{_fmt(t.per_fold[f][label][metric]['mean'])} ± "
                         f"{_fmt(t.per_fold[f][label][metric]['std'])}" if f in t.per_fold else "missing"
                         for f in folds]
                pooled = t.pooled[label][metric]
                lines.append(f"| {trainer} | {label} | {m.title} | " + " | ".join(cells) +
                             f" | {_fmt(pooled['mean'])} ± {_fmt(pooled['std'])} (n={pooled['n']}) | "
                             f"{empty['both']} / {empty['reference']} / {empty['prediction']} |")
    lines += _paired_markdown(entry) + _per_fold_markdown(entry)
    lines += _terciles_markdown(entry) + _worst_markdown(entry)
    lines += ["", "| trainer | parameters | epochs | mean epoch time (s) |", "|---|---|---|---|"]
    for trainer, t in entry.trainers.items():
        lines.append(f"| {trainer} | {t.parameters if t.parameters is not None else 'n/a'} | "
                     f"{t.epochs if t.epochs is not None else 'n/a'} | {_fmt(t.mean_epoch_seconds)} |")
    return lines + [""] + [f"![{f.split('_')[0]}]({f})" for f in entry.figures] + [""]


def _paired_markdown(entry: ConfigurationEntry) -> List[str]:
    lines = ["", "Paired per-case differences (B − A). The case bootstrap CI and the Wilcoxon p treat these "
             "trainings as fixed (they describe these models on these cases, not the method) and are not the verdict:",
             "",
             "| class | metric | pairs | mean diff | case 95% CI (trainings fixed) "
             "| corrected t 95% CI (the verdict's) | B better in (resamples) | median diff | wins / ties / losses "
             "| Wilcoxon p (trainings fixed) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, by_metric in entry.paired.items():
        for metric, s in by_metric.items():
            p = "n/a" if s.p_b_better is None else f"{s.p_b_better:.0%}"
            lines.append(f"| {class_label(label)} | {METRICS[metric].title} | {s.n_pairs} | "
                         f"{_fmt(s.mean_difference, True)} | {_ci(s.bootstrap_ci95)} | {_ci(s.hierarchical_ci95)} | "
                         f"{p} | {_fmt(s.median_difference, True)} | {s.wins} / {s.ties} / {s.losses} | "
                         f"{_p(s.wilcoxon_p)} |")
    return lines


def _per_fold_markdown(entry: ConfigurationEntry) -> List[str]:
    by_class = entry.per_fold_difference
    folds = sorted({f for by_metric in by_class.values() for d in by_metric.values() for f in d}, key=str)
    lines = ["", "Per fold (one training per trainer each), mean paired difference B − A:", "",
             "| class | metric | " + " | ".join(f"fold {f}" for f in folds) + " |", "|---|---|" + "---|" * len(folds)]
    for label, by_metric in by_class.items():
        for metric, d in by_metric.items():
            lines.append(f"| {class_label(label)} | {METRICS[metric].title} | "
                         + " | ".join(_fmt(d.get(f), True) for f in folds) + " |")
    return lines


def _terciles_markdown(entry: ConfigurationEntry) -> List[str]:
    lines = ["", "By size of the reference structure (terciles of its volume in mm³; cases with a reference):", "",
             "| class | metric | small | medium | large |", "|---|---|---|---|---|"]
    for label, by_metric in entry.size_terciles.items():
        if label == FOREGROUND:
            continue
        for metric, groups in by_metric.items():
            cells = [f"{_fmt(g['mean_difference'], True)} (n={g['n']}, "
                     f"{g['volume_mm3'][0]:.0f}–{g['volume_mm3'][1]:.0f})"
                     for g in groups] + ["n/a"] * (3 - len(groups))
            lines.append(f"| {label} | {METRICS[metric].title} | " + " | ".join(cells) + " |")
    return lines


def _worst_markdown(entry: ConfigurationEntry) -> List[str]:
    lines = ["", "Ten cases where B falls furthest behind A (foreground-mean Dice; look at them with "
                 "`nnunet-attention maps`):", "", "| fold | case | A | B | B − A |", "|---|---|---|---|---|"]
    return lines + [f"| {w['fold']} | {w['case']} | {_fmt(w['a'])} | {_fmt(w['b'])} | {_fmt(w['difference'], True)} |"
                    for w in entry.worst_cases]


def _ensembles_markdown(ensembles: Optional[Ensembles], a: str, b: str) -> List[str]:
    lines = ["### nnUNetv2_find_best_configuration", ""]
    if ensembles is None:
        return lines + ["Not run yet (no `inference_information.json`); run `nnUNetv2_find_best_configuration` with "
                        f"`-tr {a} {b}` to add the ensemble.", ""]
    lines += ["| model or ensemble | foreground Dice |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in ensembles.foreground_dice.items()]
    for key, per_class in ensembles.ensemble_per_class.items():
        lines += ["", f"`{key}` per class: " + "; ".join(
            f"{label} " + ", ".join(f"{metric.title} {_fmt(v[name])}" for name, metric in METRICS.items())
            for label, v in per_class.items())]
    best = ensembles.best
    chosen = " + ".join(f"{m['trainer']} ({m['configuration']})" for m in best.models)
    return lines + ["", f"Chosen: **{chosen}**, foreground Dice {_fmt(best.foreground_dice)} "
                        f"({_fmt(best.foreground_dice_postprocessed)} after postprocessing).", ""]
