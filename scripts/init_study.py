"""Run-to-run study of the gates' start and of the demo's budget, through nnU-Net's own commands; re-running resumes.

    python scripts/init_study.py -o study_work --report-dir docs          # the committed study (2 cores: ~1.5 h)
    python scripts/init_study.py -o tmp --runs 1 --arm 3d:5:uniform --cases 5   # a smoke run

On the generated task (nnunet-attention synth, the demo's data) it trains every arm
(``TASK:ITERATIONS:VARIANT[,VARIANT...]``; task 3d = 3d_fullres, 2d = the 2d configuration of the same data;
iterations in whole epochs of --iterations-per-epoch) --runs times, fold 0, each run with its own seed (torch, numpy,
random, in-process augmentation), at most --parallel trainings at a time, each pinned to --threads torch threads.
Variants: ungated (nnUNetTrainer), paper, identity and uniform (nnUNetTrainerAttention with that gate start).
Per run it keeps nnU-Net's validation Dice per class (summary.json of fold 0's validation cases) and the pseudo Dice
per epoch (the checkpoint's logging). It writes REPORT_DIR/init_study.json (one record per run), init_study.md (per
arm: each run, mean ± sd, how many runs lost a class: Dice < 0.1) and init_study_curves.png.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from nnunet_attention.checkpoint import load_checkpoint
from nnunet_attention.progress_files import RESUME, TRAINED, VALIDATE, training_state
from nnunet_attention.synth import DEFAULT_TASK_ID, LABELS, task_folder_name, write_msd_task
from nnunet_attention.trainers import nnUNetTrainerAttention

VARIANTS = {"ungated": "nnUNetTrainerStudy", "paper": "nnUNetTrainerAttentionStudy",
            "identity": "nnUNetTrainerAttentionIdentityInitStudy", "uniform": "nnUNetTrainerAttentionUniformInitStudy"}
TASKS = {"3d": "3d_fullres", "2d": "2d"}
DEFAULT_ARMS = ["2d:250:ungated,paper,identity,uniform", "3d:250:ungated,paper", "3d:500:ungated,paper",
                "3d:250:identity,uniform"]
LOST = 0.1  # a class whose validation Dice stays below this was not learned
STUDY_TRAINERS = Path(__file__).parent / "study_trainers"
_print_lock = threading.Lock()


def say(text: str):
    with _print_lock:
        print(text, flush=True)


def parse_arm(text: str, per_epoch: int):
    """'3d:500:ungated,paper' -> [('3d', 500, 'ungated'), ('3d', 500, 'paper')]."""
    try:
        task, iterations, variants = text.split(":")
        iterations = int(iterations)
    except ValueError:
        raise SystemExit(f"init_study: --arm takes TASK:ITERATIONS:VARIANT[,VARIANT], e.g. 3d:500:ungated,paper; "
                         f"got {text}")
    variants = variants.split(",")
    if task not in TASKS or iterations < 1 or iterations % per_epoch and iterations > per_epoch or \
            any(v not in VARIANTS for v in variants):
        raise SystemExit(f"init_study: bad --arm {text}: task one of {list(TASKS)}, iterations a multiple of "
                         f"--iterations-per-epoch ({per_epoch}), variants from {list(VARIANTS)}")
    return [(task, iterations, v) for v in variants]


class Study:
    def __init__(self, work: Path, args):
        self.work, self.args = work, args
        self.dataset = f"Dataset{DEFAULT_TASK_ID:03d}_{task_folder_name(DEFAULT_TASK_ID).split('_', 1)[1]}"
        extra = [os.environ.get("nnUNet_extTrainer"), str(STUDY_TRAINERS)]
        self.env = {**os.environ, "nnUNet_raw": str(work / "nnUNet_raw"),
                    "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"),
                    "nnUNet_results": str(work / "results"),
                    "nnUNet_extTrainer": os.pathsep.join(p for p in extra if p),
                    "nnUNet_compile": os.environ.get("nnUNet_compile", "f"),
                    # nnU-Net's default of 8 export workers spends most of a small validation starting them
                    "nnUNet_def_n_proc": os.environ.get("nnUNet_def_n_proc", str(min(8, os.cpu_count() or 1)))}

    def prepare(self, configurations):
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        task = self.work / "msd" / task_folder_name(DEFAULT_TASK_ID)
        if not (task / "dataset.json").is_file():
            say("synth")
            write_msd_task(str(task.parent), DEFAULT_TASK_ID, self.args.cases, 0, seed=0,
                           shape=tuple(self.args.shape), overwrite=True)
        if not (self.work / "nnUNet_raw" / self.dataset).is_dir():
            self.run_logged(["nnUNetv2_convert_MSD_dataset", "-i", task, "-np", "2"], self.env, "convert.log")
        preprocessed = self.work / "nnUNet_preprocessed" / self.dataset
        if not all((preprocessed / f"nnUNetPlans_{c}").is_dir() for c in configurations):
            self.run_logged(["nnUNetv2_plan_and_preprocess", "-d", DEFAULT_TASK_ID, "-c", *configurations, "-np", "2"],
                            self.env, "plan.log")

    def run_logged(self, command, env, log_name: str):
        log_file = self.work / "logs" / log_name
        say(f"    $ {' '.join(map(str, command))}  (log: {log_file})")
        with open(log_file, "w") as log:
            result = subprocess.run(list(map(str, command)), env=env, stdout=log, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed (exit {result.returncode}); see {log_file}")

    def fold_folder(self, task: str, iterations: int, variant: str, run: int) -> Path:
        return (self.work / "results" / f"it{iterations}_run{run}" / self.dataset /
                f"{VARIANTS[variant]}__nnUNetPlans__{TASKS[task]}" / "fold_0")

    def train(self, job):
        task, iterations, variant, run = job
        folder = self.fold_folder(task, iterations, variant, run)
        state = training_state(str(folder))
        name = f"{task} {iterations} it {variant} run {run}"
        if state == TRAINED:
            say(f"[done before] {name}")
            return
        say(f"[start {time.strftime('%H:%M:%S')}] {name}")
        per_epoch = min(iterations, self.args.iterations_per_epoch)
        env = {**self.env, "nnUNet_results": str(folder.parents[2]), "NNUNET_ATTENTION_STUDY_SEED": str(run),
               "NNUNET_ATTENTION_STUDY_EPOCHS": str(iterations // per_epoch),
               "NNUNET_ATTENTION_STUDY_ITERATIONS": str(per_epoch),
               "NNUNET_ATTENTION_STUDY_VAL_ITERATIONS": str(self.args.val_iterations),
               "NNUNET_ATTENTION_STUDY_THREADS": str(self.args.threads),
               "nnUNet_n_proc_DA": "0"}  # augmentation in the training process: seeded with the run
        extra = {RESUME: ["--c"], VALIDATE: ["--val"]}.get(state, [])
        start = time.time()
        self.run_logged(["nnUNetv2_train", DEFAULT_TASK_ID, TASKS[task], "0", "-tr", VARIANTS[variant], "-device",
                         self.args.device, *extra], env, f"{task}_it{iterations}_{variant}_run{run}.log")
        say(f"[done  {time.strftime('%H:%M:%S')}] {name} in {time.time() - start:.0f} s")

    def record(self, job) -> dict:
        task, iterations, variant, run = job
        folder = self.fold_folder(task, iterations, variant, run)
        logging = load_checkpoint(str(folder / "checkpoint_final.pth"), mmap=True)["logging"]
        summary = json.loads((folder / "validation" / "summary.json").read_text())
        names = json.loads((self.work / "nnUNet_raw" / self.dataset / "dataset.json").read_text())["labels"]
        label_name = {str(v): k for k, v in names.items()}
        dice = {label_name[str(k)]: float(v["Dice"]) for k, v in summary["mean"].items()}
        return {"task": task, "configuration": TASKS[task], "variant": variant, "trainer": VARIANTS[variant],
                "iterations": iterations, "run": run, "seed": run, "validation_dice": dice,
                "validation_mean_dice": float(summary["foreground_mean"]["Dice"]),
                "validation_cases": len(summary["metric_per_case"]),
                "pseudo_dice_per_epoch": [float(v) for v in logging["mean_fg_dice"]],
                "epoch_seconds": [float(e - s) for s, e in zip(logging["epoch_start_timestamps"],
                                                               logging["epoch_end_timestamps"])]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", required=True, help="work folder (nnU-Net folders, logs)")
    parser.add_argument("--report-dir", help="where init_study.json/.md/_curves.png go (default: -o)")
    parser.add_argument("--arm", action="append", help=f"TASK:ITERATIONS:VARIANT[,VARIANT] (repeatable; default "
                                                       f"{' '.join(DEFAULT_ARMS)})")
    parser.add_argument("--runs", type=int, default=3, help="independent runs (seeds 0..runs-1) per arm (default 3)")
    parser.add_argument("--iterations-per-epoch", type=int, default=250, help="nnU-Net's 250 (default)")
    parser.add_argument("--val-iterations", type=int, default=50, help="validation batches per epoch (default 50)")
    parser.add_argument("--cases", type=int, default=20, help="training cases of the generated task (default 20)")
    parser.add_argument("--shape", type=int, nargs=3, default=(20, 48, 48), help="volume shape (default 20 48 48)")
    parser.add_argument("--parallel", type=int, default=2, help="trainings at a time (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training (default 1)")
    parser.add_argument("-device", "--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if min(args.runs, args.iterations_per_epoch, args.val_iterations, args.parallel, args.threads) < 1 or \
            args.cases < 5:
        sys.exit("init_study: --runs, --iterations-per-epoch, --val-iterations, --parallel and --threads must be "
                 ">= 1, --cases >= 5 (nnU-Net splits the cases into 5 folds)")
    groups = [parse_arm(text, args.iterations_per_epoch) for text in (args.arm or DEFAULT_ARMS)]
    arms = [arm for group in groups for arm in group]
    # arm by arm as given, run 0 of every variant of an arm first: an interrupted arm is balanced across variants
    jobs = [(*arm, run) for group in groups for run in range(args.runs) for arm in group]
    work = Path(args.o).resolve()
    report_dir = Path(args.report_dir or work).resolve()
    study = Study(work, args)
    study.prepare(sorted({TASKS[task] for task, _, _ in arms}))
    failures = []

    def attempt(job):
        try:
            study.train(job)
        except RuntimeError as error:
            failures.append(str(error))
            say(f"[failed] {error}")

    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(attempt, jobs))
    records = [study.record(job) for job in jobs if training_state(str(study.fold_folder(*job))) == TRAINED]
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.device}",
              "command": " ".join(["python", "scripts/init_study.py", *sys.argv[1:]]),
              "default": nnUNetTrainerAttention.gate_init, "lost_class_below": LOST, "runs_asked": args.runs,
              "arms_asked": [f"{t}:{i}:{v}" for t, i, v in arms],
              "data": {"cases": args.cases, "shape": list(args.shape), "fold": 0}, "runs": records}
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "init_study.json").write_text(json.dumps(result, indent=1))
    (report_dir / "init_study.md").write_text(render(result))
    plot(result, report_dir / "init_study_curves.png")
    print(render(result))
    print(f"\n{report_dir / 'init_study.md'}, {report_dir / 'init_study.json'}, {report_dir / 'init_study_curves.png'}")
    if failures:
        sys.exit(f"init_study: {len(failures)} training(s) failed; re-run the same command to resume")


def _mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if values.size > 1 else 0:.3f}"


def arms_of(result: dict) -> dict:
    """(task, iterations, variant) -> that arm's runs, in run order."""
    arms = {}
    for record in sorted(result["runs"], key=lambda r: r["run"]):
        arms.setdefault((record["task"], record["iterations"], record["variant"]), []).append(record)
    return arms


def render(result: dict) -> str:
    classes = [n for n in LABELS.values() if n != "background"]
    lines = ["# Initialisation and budget study", "",
             f"Machine: {result['machine']}. Command: `{result['command']}`. Data: the demo's generated task "
             f"({result['data']['cases']} cases of {'x'.join(map(str, result['data']['shape']))} voxels), fold "
             f"{result['data']['fold']}; one run = one nnU-Net training with its own seed. Default gate start of "
             f"`nnUNetTrainerAttention`: **{result['default']}**.", "",
             f"Validation Dice is nnU-Net's (summary.json, the fold's validation cases); a run *lost* a class when its "
             f"validation Dice for that class is below {result['lost_class_below']}. Pseudo Dice is nnU-Net's mean "
             f"foreground Dice on the epoch's validation patches.", "",
             "| task | iterations | variant | runs: validation mean Dice (" + ", ".join(classes) + ") | mean ± sd | "
             + " | ".join(f"{c} mean ± sd" for c in classes) + " | runs that lost a class | pseudo Dice per epoch "
             "(mean over runs) |",
             "|---|---|---|---|---|" + "---|" * len(classes) + "---|---|"]
    for (task, iterations, variant), runs in sorted(arms_of(result).items(), key=lambda kv: (kv[0][0], kv[0][1])):
        cells = ", ".join(f"{r['validation_mean_dice']:.3f} (" + "/".join(f"{r['validation_dice'][c]:.2f}"
                                                                         for c in classes) + ")" for r in runs)
        lost = sum(min(r["validation_dice"][c] for c in classes) < result["lost_class_below"] for r in runs)
        if len(runs) < result["runs_asked"]:
            cells += f" (**incomplete**: {len(runs)} of {result['runs_asked']} runs)"
        epochs = min(len(r["pseudo_dice_per_epoch"]) for r in runs)
        pseudo = " → ".join(f"{np.mean([r['pseudo_dice_per_epoch'][e] for r in runs]):.2f}" for e in range(epochs))
        lines.append(f"| {task} | {iterations} | {variant} | {cells} | {_mean_sd([r['validation_mean_dice'] for r in runs])}"
                     f" | " + " | ".join(_mean_sd([r["validation_dice"][c] for r in runs]) for c in classes)
                     + f" | {lost} of {len(runs)} | {pseudo} |")
    done = {f"{t}:{i}:{v}" for t, i, v in arms_of(result)}
    missing = [a for a in result["arms_asked"] if a not in done]
    if missing:
        lines += ["", "Asked for but not run (no finished run): " + ", ".join(f"`{a}`" for a in missing) + "."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path):
    """Per task (columns): each run's validation mean Dice and nodule Dice per budget (dots, the mean as a bar), and
    each run's pseudo Dice after every epoch (lines with markers)."""
    from matplotlib.figure import Figure

    colours = {"ungated": "black", "paper": "tab:blue", "identity": "tab:orange", "uniform": "tab:green"}
    tasks = sorted({r["task"] for r in result["runs"]})
    fig = Figure(figsize=(6 * max(1, len(tasks)), 11), layout="constrained")
    axes = fig.subplots(3, max(1, len(tasks)), squeeze=False)
    for column, task in enumerate(tasks):
        arms = {k: v for k, v in arms_of(result).items() if k[0] == task}
        budgets = sorted({k[1] for k in arms})
        variants = [v for v in colours if any(k[2] == v for k in arms)]
        for row, (value, label) in enumerate(((lambda r: r["validation_mean_dice"], "validation mean Dice"),
                                              (lambda r: r["validation_dice"]["nodule"], "validation Dice, nodule"))):
            ax = axes[row, column]
            for budget in budgets:
                for variant in variants:
                    values = [value(r) for r in arms.get((task, budget, variant), [])]
                    x = budgets.index(budget) + (variants.index(variant) - (len(variants) - 1) / 2) * 0.15
                    ax.scatter([x] * len(values), values, color=colours[variant], s=22,
                               label=variant if budget == budgets[0] else None)
                    if values:
                        ax.hlines(np.mean(values), x - 0.06, x + 0.06, color=colours[variant], lw=2)
            ax.set_xticks(range(len(budgets)), [f"{b} iterations" for b in budgets])
            ax.set_ylim(0, 1)
            ax.axhline(result["lost_class_below"], color="grey", lw=0.6, ls=":")
            ax.set_ylabel(f"{label} (fold 0), one dot per run", fontsize=8)
            ax.set_title(f"{task} ({TASKS[task]}): {label}", fontsize=10)
            ax.legend(fontsize=7, loc="lower right")
        ax = axes[2, column]
        for (_, budget, variant), runs in arms.items():
            for r in runs:
                steps = budget // len(r["pseudo_dice_per_epoch"])
                ax.plot([(e + 1) * steps for e in range(len(r["pseudo_dice_per_epoch"]))], r["pseudo_dice_per_epoch"],
                        color=colours[variant], marker="o", ms=3, lw=0.8, alpha=0.7)
        ax.set_xlabel("iterations")
        ax.set_ylabel("pseudo Dice (validation patches), one line per run", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"{task}: pseudo Dice after each epoch", fontsize=10)
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
