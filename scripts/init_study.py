"""The demo's study: how much one training differs from the next at exactly the demo's settings, with and without
paired randomness; resumable.

    python scripts/init_study.py -o study_work --report-dir docs --runs 2 --last-run-folds 0   # the committed study
                                                                        # (2 cores: about 60 minutes)
    python scripts/init_study.py -o tmp --runs 1 --folds 0 --cases 5      # a smoke run
    python scripts/init_study.py -o study_work --report-dir docs --runs 1 --folds 4 --merge docs/init_study.json
                                                  # more folds for the committed study, its earlier trainings kept

It makes the demo's data with the demo's own steps (synth, nnUNetv2_convert_MSD_dataset, nnUNetv2_plan_and_preprocess),
then trains the demo's two trainers on the demo's folds, --runs times each, in two arms, two trainings at a time as
the demo runs them: **paired**, run r is exactly the demo's command with study seed r (``nnunet-attention train ...
--seed r``; the demo itself runs seed 0); **unpaired**, run r is ``nnUNetv2_train ...`` as nnU-Net runs it (no seed).
Runs alternate between the arms, so that a study cut short stays balanced. Per training it keeps nnU-Net's validation
Dice per class and the pseudo Dice per epoch; per arm, run and fold the paired difference B - A of the foreground mean
Dice; per arm the sd of those differences, the variance ratio unpaired / paired with its 95% CI (F distribution) and the
folds each arm would need for the demo's verdict. It writes REPORT_DIR/init_study.json, init_study.md and
init_study_curves.png. (The demo quotes the real-training calibration at its settings instead:
scripts/real_calibration.py report --demo-data.)
"""
import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from nnunet_attention.compare.analysis import LOST_DICE
from nnunet_attention.compare.statistics import folds_needed
from nnunet_attention.model.checkpoint import load_checkpoint
from nnunet_attention.model.trainers import nnUNetTrainerAttention, nnUNetTrainerDemo
from nnunet_attention.nnunet_api import model_identifier
from nnunet_attention.study import demo, steps
from nnunet_attention.study.steps import TRAINED, Folders, training_state
from nnunet_attention.study.executor import LocalExecutor
from nnunet_attention.study.synth import DEFAULT_TASK_ID, LABELS, TASK_NAME, task_folder_name
from real_calibration import machine_in_words, with_env

ARMS = ("paired", "unpaired")
DATASET = f"Dataset{DEFAULT_TASK_ID:03d}_{TASK_NAME}"
DEMO_SCHEDULE = "{} epochs of {} iterations, {} validation batches each".format(*nnUNetTrainerDemo.schedule)


def results_root(work: Path, arm: str, run: int) -> Path:
    return work / arm / f"run{run}"


def fold_folder(work: Path, arm: str, run: int, trainer: str, fold) -> Path:
    return (results_root(work, arm, run) / DATASET / model_identifier(trainer, demo.PLANS, demo.DEMO_CONFIGURATION)
            / f"fold_{fold}")


def train_all(work: Path, args):
    """The demo's data and plans, then every run's trainings, the arms alternating, two at a time: the demo's own
    steps (steps.prepare_steps, steps.train_steps: the step model grid and the demo run) through the executor they
    use, each arm and run in its own nnUNet_results."""
    env = demo.demo_environment(str(work))
    spec = demo.demo_spec(DATASET, demo.DEMO_CONFIGURATION, list(args.folds), list(demo.DEMO_TRAINERS), "cpu", None,
                          int(env["nnUNet_def_n_proc"]))
    synth = {"cases": args.cases, "test_cases": demo.SYNTH_TEST_CASES, "shape": list(demo.SYNTH_SHAPE)}
    units = with_env(steps.prepare_steps(str(work / "msd" / task_folder_name(DEFAULT_TASK_ID)), spec, Folders.of(env),
                                         synth), env)
    plan = units[-1].key
    for run in range(args.runs):
        for arm in ARMS:
            arm_env = {**env, "nnUNet_results": str(results_root(work, arm, run))}
            folds = args.last_run_folds if run == args.runs - 1 and args.last_run_folds is not None else args.folds
            arm_spec = replace(spec, folds=folds, seed=run if arm == "paired" else None)
            units += with_env([replace(s, after=(plan,), trainer=f"{s.trainer}@{arm}{run}")
                               for s in steps.train_steps(arm_spec, DATASET, Folders.of(arm_env))], arm_env)
    failed = LocalExecutor(env, str(work / "logs"), max_parallel=demo.trainings_at_once(demo.DEMO_TRAINERS, "cpu"),
                           on_end=lambda step, seconds, code: print(f"{'done' if code == 0 else f'FAILED ({code})'}: "
                                                                    f"{step.key} ({seconds:.0f} s)", flush=True)
                           ).run_steps(units)
    if failed:
        sys.exit(f"init_study: {len(failed)} steps not done: {', '.join(s.key for s in failed)} (see {work}/logs)")


def record(work: Path, arm: str, run: int, trainer: str, fold) -> dict:
    folder = fold_folder(work, arm, run, trainer, fold)
    logging = load_checkpoint(str(folder / "checkpoint_final.pth"), mmap=True)["logging"]
    summary = json.loads((folder / "validation" / "summary.json").read_text())
    return {"arm": arm, "run": run, "seed": run if arm == "paired" else None, "fold": fold, "trainer": trainer,
            "validation_dice": {LABELS[str(k)]: float(v["Dice"]) for k, v in summary["mean"].items()},
            "validation_mean_dice": float(summary["foreground_mean"]["Dice"]),
            "validation_cases": len(summary["metric_per_case"]),
            "pseudo_dice_per_epoch": [float(v) for v in logging["mean_fg_dice"]],
            "epoch_seconds": [float(e - s) for s, e in zip(logging["epoch_start_timestamps"],
                                                           logging["epoch_end_timestamps"])]}


def arm_summary(records: list, runs: int, folds: list) -> dict:
    """One arm: per trainer the validation mean Dice over its trainings and the trainings that lost a class; the
    differences B - A of the two trainings of each run and fold."""
    ungated, gated = demo.DEMO_TRAINERS
    by_key = {(r["run"], r["fold"], r["trainer"]): r for r in records}
    dice = {key: r["validation_mean_dice"] for key, r in by_key.items()}
    differences = [dice[(run, fold, gated)] - dice[(run, fold, ungated)] for run in range(runs) for fold in folds
                   if (run, fold, gated) in dice and (run, fold, ungated) in dice]
    trainers = []
    for trainer in demo.DEMO_TRAINERS:
        values = np.array([r["validation_mean_dice"] for r in records if r["trainer"] == trainer])
        trainers.append({"trainer": trainer, "runs": int(values.size), "mean": float(values.mean()),
                         "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                         "lost": sum(min(r["validation_dice"].values()) <= LOST_DICE for r in records
                                     if r["trainer"] == trainer)})
    d = np.array(differences)
    return {"trainers": trainers,
            "difference": {"n": int(d.size), "mean": float(d.mean()), "sd": float(d.std(ddof=1)),
                           "min": float(d.min()), "max": float(d.max()), "values": d.tolist()}}


def pairing_effect(records: list) -> dict:
    """Does pairing change what nnU-Net trains? Per fold and run, the paired training's validation mean Dice minus
    the unpaired one's, per trainer and averaged over the two trainers; the mean of the per-fold averages with a t
    interval over folds (the folds share cases, so the interval is approximate, and narrower than the truth)."""
    from scipy.stats import t

    dice = {(r["arm"], r["run"], r["fold"], r["trainer"]): r["validation_mean_dice"] for r in records}
    keys = sorted({(run, fold) for arm, run, fold, _ in dice if arm == "paired"})
    per_trainer = {trainer: [dice[("paired", run, fold, trainer)] - dice[("unpaired", run, fold, trainer)]
                             for run, fold in keys if ("unpaired", run, fold, trainer) in dice
                             and ("paired", run, fold, trainer) in dice]
                   for trainer in demo.DEMO_TRAINERS}
    both = np.array([np.mean([dice[("paired", run, fold, tr)] - dice[("unpaired", run, fold, tr)]
                              for tr in demo.DEMO_TRAINERS]) for run, fold in keys
                     if all((arm, run, fold, tr) in dice for arm in ARMS for tr in demo.DEMO_TRAINERS)])
    result = {"per_trainer": {tr: {"values": v, "mean": float(np.mean(v)) if v else None} for tr, v in
                              per_trainer.items()}, "n": int(both.size)}
    if both.size >= 2:
        se = float(both.std(ddof=1) / np.sqrt(both.size))
        half = float(t.ppf(0.975, both.size - 1)) * se
        result.update(mean=float(both.mean()), ci95=[float(both.mean()) - half, float(both.mean()) + half],
                      p=float(2 * t.sf(abs(both.mean()) / se, both.size - 1)) if se > 0 else None,
                      paired_lower=int((both < 0).sum()))
    return result


def summarise(records: list, runs_asked: int, folds: list) -> dict:
    """What the demo quotes: each arm's figures; the variance ratio of the differences, unpaired / paired, with its
    95% CI and one-sided p (F distribution: the differences taken as independent and normal); per arm the folds the
    demo's verdict would need to show equivalence at a true difference of 0 (t interval inside ±margin)."""
    from scipy.stats import f

    arms = {arm: arm_summary([r for r in records if r["arm"] == arm], runs_asked, folds) for arm in ARMS}
    paired, unpaired = (arms[a]["difference"] for a in ARMS)
    ratio = (unpaired["sd"] / paired["sd"]) ** 2
    df = (unpaired["n"] - 1, paired["n"] - 1)
    trimmed = [np.delete(values, np.argmax(np.abs(values - np.median(values))))
               for values in (np.array(arms[a]["difference"]["values"]) for a in ARMS)]
    trimmed_ratio = float(trimmed[1].var(ddof=1) / trimmed[0].var(ddof=1))
    trimmed_df = (trimmed[1].size - 1, trimmed[0].size - 1)
    one_cv = 1 / 4  # n_val / n_train of nnU-Net's 5-fold split
    needed = {f"{margin:g}": {arm: folds_needed(0.0, arms[arm]["difference"]["sd"] * np.sqrt(1 + one_cv), 1, margin,
                                                one_cv)["equivalence"] for arm in ARMS}
              for margin in (demo.demo_margins()["dice"], 0.02)}
    return {"settings": {"configuration": demo.DEMO_CONFIGURATION, "folds": list(folds),
                         "trainers": list(demo.DEMO_TRAINERS), "synth_cases": demo.SYNTH_CASES,
                         "synth_shape": list(demo.SYNTH_SHAPE), "schedule": demo.demo_schedule(),
                         "paired_seeds": list(range(runs_asked)), "demo_seed": demo.DEMO_SEED},
            "runs_per_fold": runs_asked, "lost_class_at_most": LOST_DICE, "arms": arms,
            "variance_ratio": {"ratio": ratio, "ci95": [ratio / f.ppf(0.975, *df), ratio / f.ppf(0.025, *df)],
                               "p_one_sided": float(f.sf(ratio, *df)), "df": list(df),
                               "without_each_arms_farthest": {
                                   "ratio": trimmed_ratio, "df": list(trimmed_df),
                                   "ci95": [trimmed_ratio / f.ppf(0.975, *trimmed_df),
                                            trimmed_ratio / f.ppf(0.025, *trimmed_df)],
                                   "p_one_sided": float(f.sf(trimmed_ratio, *trimmed_df))}},
            "folds_for_equivalence": needed, "pairing_effect": pairing_effect(records)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", required=True, help="work folder (nnU-Net folders, logs)")
    parser.add_argument("--report-dir", help="where init_study.json/.md/_curves.png go (default: -o)")
    parser.add_argument("--runs", type=int, default=3, help="runs per arm, fold and trainer (default 3)")
    parser.add_argument("--folds", type=int, nargs="+", default=list(demo.DEMO_FOLDS),
                        help=f"folds (default the demo's: {' '.join(map(str, demo.DEMO_FOLDS))})")
    parser.add_argument("--last-run-folds", type=int, nargs="+",
                        help="the last run trains only these folds (a shorter study; the report pairs what exists)")
    parser.add_argument("--merge", help="an earlier init_study.json at the same settings: its trainings join this "
                                        "run's (a training of the same arm, run, fold and trainer is this run's)")
    parser.add_argument("--cases", type=int, default=demo.SYNTH_CASES,
                        help=f"training cases of the generated task (default the demo's {demo.SYNTH_CASES})")
    args = parser.parse_args()
    if args.runs < 1 or args.cases < 5:
        sys.exit("init_study: --runs must be >= 1 and --cases >= 5 (nnU-Net splits the cases into 5 folds)")
    work = Path(args.o).resolve()
    report_dir = Path(args.report_dir or work).resolve()
    train_all(work, args)
    records = [record(work, arm, run, trainer, fold) for arm in ARMS for run in range(args.runs)
               for fold in args.folds for trainer in demo.DEMO_TRAINERS
               if training_state(str(fold_folder(work, arm, run, trainer, fold)), need_npz=True) == TRAINED]
    command = " ".join(["python", "scripts/init_study.py", *sys.argv[1:]])
    machine = machine_in_words()
    runs, folds = args.runs, list(args.folds)
    if args.merge:
        earlier = json.loads(Path(args.merge).read_text())
        new = {(r["arm"], r["run"], r["fold"], r["trainer"]) for r in records}
        records = [r for r in earlier["runs"] if (r["arm"], r["run"], r["fold"], r["trainer"]) not in new] + records
        runs = max(runs, earlier["summary"]["runs_per_fold"])
        folds = sorted(set(folds) | {r["fold"] for r in records})
        command = f"{earlier['command']}; then {command}"
        machine = (f"{earlier['machine']}; the trainings of fold(s) {', '.join(map(str, args.folds))} on {machine} "
                   f"(CPU kinds give different floating-point results: a paired training repeats exactly on one "
                   f"machine kind, docs/demo.md)")
    summary = summarise(records, runs, folds)
    result = {"machine": machine, "command": command,
              "default": nnUNetTrainerAttention.gates.init, "studied_demo_settings": args.cases == demo.SYNTH_CASES,
              "summary": summary, "runs": records}
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "init_study.json").write_text(json.dumps(result, indent=1))
    (report_dir / "init_study.md").write_text(render(result))
    plot(result, report_dir / "init_study_curves.png")
    print(render(result))


def render(result: dict) -> str:
    summary = result["summary"]
    classes = [n for n in LABELS.values() if n != "background"]
    settings = summary["settings"]
    ratio = summary["variance_ratio"]
    trimmed = ratio["without_each_arms_farthest"]
    lines = ["# The demo's study: paired and unpaired trainings", "",
             f"Machine: {result['machine']}. Command: `{result['command']}`. What it samples: the demo's generated "
             f"task "
             f"({settings['synth_cases']} training cases of {'x'.join(map(str, settings['synth_shape']))} voxels), "
             f"configuration {settings['configuration']}, folds {', '.join(map(str, settings['folds']))}, the "
             f"demo's trainers ({', '.join(settings['trainers'])}: {DEMO_SCHEDULE}), two trainings at a time; "
             f"{summary['runs_per_fold']} runs per fold, trainer and arm. **Paired**: run r is the demo's own command "
             f"with study seed r (`nnunet-attention train ... --seed r`; the demo runs seed {settings['demo_seed']}, "
             f"so paired run {settings['demo_seed']} is what the demo trains). **Unpaired**: `nnUNetv2_train ...` as "
             f"nnU-Net runs it, each training its own randomness. Default gate start of `nnUNetTrainerAttention`: "
             f"**{result['default']}**.",
             "", f"Validation Dice is nnU-Net's (summary.json of the fold's validation cases); a training *lost* a "
                 f"class when its validation Dice for that class is at most {summary['lost_class_at_most']}.", "",
             "## What pairing buys", "",
             "| arm | fold pairs | B − A: mean | sd | range |", "|---|---|---|---|---|"]
    for arm in ARMS:
        d = summary["arms"][arm]["difference"]
        lines.append(f"| {arm} | {d['n']} | {d['mean']:+.4f} | {d['sd']:.4f} | {d['min']:+.4f} to {d['max']:+.4f} |")
    needed = summary["folds_for_equivalence"]
    lines += ["", f"Variance ratio of the per-fold differences, unpaired / paired: **{ratio['ratio']:.2f}** (95% CI "
                  f"{ratio['ci95'][0]:.2f} to {ratio['ci95'][1]:.2f}, F distribution with {ratio['df'][0]} and "
                  f"{ratio['df'][1]} degrees of freedom; one-sided p = {ratio['p_one_sided']:.3g} for 'pairing "
                  f"lowers the variance'). It assumes the differences independent and normal; the fold pairs of one "
                  f"run share the task's splits, so read the CI as approximate. Without each arm's difference farthest "
                  f"from its median (a test of how much one training decides it): **{trimmed['ratio']:.2f}** (95% CI "
                  f"{trimmed['ci95'][0]:.2f} to {trimmed['ci95'][1]:.2f}, p = {trimmed['p_one_sided']:.3g}).", "",
              "Trainings per trainer (folds over repeats of the 5-fold cross-validation) the demo's verdict needs to "
              "show equivalence when the true difference is 0, at each arm's spread (compare's corrected t interval, "
              "inside ±margin; none: no number of trainings on this task does): "
              + "; ".join(f"±{margin}: paired {k['paired']}, unpaired {k['unpaired']}" for margin, k in needed.items())
              + ".", "",
              *pairing_effect_lines(summary.get("pairing_effect")),
              "## Every training", "",
              "| arm | run | fold | trainer | validation mean Dice | " + " | ".join(classes)
              + " | pseudo Dice per epoch |",
              "|---|---|---|---|---|" + "---|" * len(classes) + "---|"]
    for r in sorted(result["runs"], key=lambda r: (r["arm"], r["run"], r["fold"], r["trainer"])):
        lines.append(f"| {r['arm']} | {r['run']} | {r['fold']} | {r['trainer']} | {r['validation_mean_dice']:.3f} | "
                     + " | ".join(f"{r['validation_dice'][c]:.3f}" for c in classes) + " | "
                     + " → ".join(f"{v:.2f}" for v in r["pseudo_dice_per_epoch"]) + " |")
    lines += ["", "| arm | trainer | trainings | validation mean Dice, mean ± sd | trainings that lost a class |",
              "|---|---|---|---|---|"]
    lines += [f"| {arm} | {t['trainer']} | {t['runs']} | {t['mean']:.3f} ± {t['sd']:.3f} | {t['lost']} |"
              for arm in ARMS for t in summary["arms"][arm]["trainers"]]
    lines += ["", "The earlier study of gate starts (paper, identity, uniform) and budgets (2d and 3d_fullres, 250 and "
                  "500 iterations) on the previous version of the task: [gate_start_study.md](gate_start_study.md)."]
    return "\n".join(lines) + "\n"


def pairing_effect_lines(effect) -> list:
    if not effect or effect.get("mean") is None:
        return []
    return ["## Does pairing change what nnU-Net trains?", "",
            f"Paired minus unpaired validation mean Dice, the same trainer, fold and run, averaged over the two "
            f"trainers: **{effect['mean']:+.4f}** (95% t interval over {effect['n']} fold-runs "
            f"{effect['ci95'][0]:+.4f} to {effect['ci95'][1]:+.4f}, p = {effect['p']:.3g}; paired lower in "
            f"{effect['paired_lower']} of {effect['n']}). Per trainer: " + "; ".join(
                f"{tr} {v['mean']:+.4f} (" + ", ".join(f"{x:+.3f}" for x in v["values"]) + ")"
                for tr, v in effect["per_trainer"].items()) + ". The folds share the task's cases, so the interval "
            "is approximate (narrower than a method-level one).", ""]


def plot(result: dict, path: Path):
    """Left: each arm's per-fold differences B - A (one dot per run and fold). Right: each training's pseudo Dice
    after every epoch, per arm."""
    from matplotlib.figure import Figure

    colours = dict(zip(demo.DEMO_TRAINERS, ("black", "tab:blue")))
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, *curves = fig.subplots(1, 3)
    for i, arm in enumerate(ARMS):
        values = result["summary"]["arms"][arm]["difference"]["values"]
        left.scatter(np.full(len(values), i) + np.linspace(-0.1, 0.1, len(values)), values, s=18, color="tab:blue")
        left.hlines(np.mean(values), i - 0.2, i + 0.2, color="black", lw=2)
    left.axhline(0, color="grey", lw=0.6)
    left.set_xticks(range(len(ARMS)), ARMS)
    left.set_ylabel("validation mean Dice, B − A per run and fold", fontsize=8)
    for ax, arm in zip(curves, ARMS):
        for r in (r for r in result["runs"] if r["arm"] == arm):
            ax.plot(range(len(r["pseudo_dice_per_epoch"])), r["pseudo_dice_per_epoch"], color=colours[r["trainer"]],
                    marker="o", ms=3, lw=0.8, alpha=0.6)
        ax.set_title(f"{arm}: black {demo.DEMO_TRAINERS[0]}, blue {demo.DEMO_TRAINERS[1]}", fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("pseudo Dice (validation patches)", fontsize=8)
        ax.set_ylim(0, 1)
    fig.suptitle("The demo's study: paired and unpaired trainings at the demo's settings", fontsize=10)
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
