"""Learning-speed study of the gates' initialisation, through nnU-Net's own commands; re-running resumes.

    python scripts/init_study.py -o study_work                  # the full study: ~hours on a CPU, minutes on a GPU
    python scripts/init_study.py -o study_work --runs 1 --epochs 1 --iterations 5 --cases 6   # a smoke run

On the generated task (nnunet-attention synth) it trains, for each task kind (3d: 3d_fullres; 2d: the 2d
configuration of the same data) and each variant (ungated nnUNetTrainer; gated with the paper's, the identity and
the uniform initialisation), --runs independent runs (seeds 0, 1, ...) of --epochs epochs of --iterations iterations,
fold 0, a checkpoint after every epoch. Per epoch it reads nnU-Net's pseudo Dice (mean foreground Dice on the
validation patches of that epoch, from the checkpoint's logging), and at the end nnU-Net's validation Dice on the
fold's validation cases (summary.json). It writes WORK/study.json, WORK/study.md (mean ± sd over runs per variant and
checkpoint) and WORK/study_curves.png.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from nnunet_attention.checkpoint import load_checkpoint
from nnunet_attention.progress_files import RESUME, TRAINED, VALIDATE, training_state
from nnunet_attention.synth import DEFAULT_TASK_ID, task_folder_name, write_msd_task

VARIANTS = {"ungated": "nnUNetTrainerStudy", "paper": "nnUNetTrainerAttentionStudy",
            "identity": "nnUNetTrainerAttentionIdentityInitStudy", "uniform": "nnUNetTrainerAttentionUniformInitStudy"}
TASKS = {"3d": "3d_fullres", "2d": "2d"}
STUDY_TRAINERS = Path(__file__).parent / "study_trainers"


def _run(command, env, log_file: Path):
    print(f"    $ {' '.join(map(str, command))}  (log: {log_file})", flush=True)
    with open(log_file, "w") as log:
        result = subprocess.run(list(map(str, command)), env=env, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.exit(f"init_study: {command[0]} failed (exit {result.returncode}); see {log_file}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", required=True, help="work folder (nnU-Net folders, logs, results)")
    parser.add_argument("--runs", type=int, default=3, help="independent runs (seeds) per variant (default 3)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (default 4)")
    parser.add_argument("--iterations", type=int, default=250, help="iterations per epoch (default 250)")
    parser.add_argument("--val-iterations", type=int, default=50, help="validation batches per epoch (default 50)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--cases", type=int, default=20, help="training cases of the generated task (default 20)")
    parser.add_argument("--shape", type=int, nargs=3, default=(20, 48, 48), help="volume shape (default 20 48 48)")
    parser.add_argument("-device", "--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if min(args.runs, args.epochs, args.iterations, args.val_iterations) < 1 or args.cases < 5:
        sys.exit("init_study: --runs, --epochs, --iterations and --val-iterations must be >= 1, --cases >= 5 "
                 "(nnU-Net splits the cases into 5 folds)")

    work = Path(args.o).resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "nnUNet_raw": str(work / "nnUNet_raw"), "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"),
           "nnUNet_results": str(work / "results_run0"),
           "nnUNet_extTrainer": os.pathsep.join(p for p in (os.environ.get("nnUNet_extTrainer"), str(STUDY_TRAINERS))
                                                if p),
           "nnUNet_compile": os.environ.get("nnUNet_compile", "f"),
           "NNUNET_ATTENTION_STUDY_EPOCHS": str(args.epochs), "NNUNET_ATTENTION_STUDY_ITERATIONS": str(args.iterations),
           "NNUNET_ATTENTION_STUDY_VAL_ITERATIONS": str(args.val_iterations)}
    task = work / "msd" / task_folder_name(DEFAULT_TASK_ID)
    if not (task / "dataset.json").is_file():
        print("synth", flush=True)
        write_msd_task(str(task.parent), DEFAULT_TASK_ID, args.cases, 0, seed=0, shape=tuple(args.shape),
                       overwrite=True)
    dataset = f"Dataset{DEFAULT_TASK_ID:03d}_{task.name.split('_', 1)[1]}"
    if not (work / "nnUNet_raw" / dataset).is_dir():
        _run(["nnUNetv2_convert_MSD_dataset", "-i", task, "-np", "2"], env, work / "logs" / "convert.log")
    configurations = [TASKS[t] for t in args.tasks]
    if not all((work / "nnUNet_preprocessed" / dataset / f"nnUNetPlans_{c}").is_dir() for c in configurations):
        _run(["nnUNetv2_plan_and_preprocess", "-d", DEFAULT_TASK_ID, "-c", *configurations, "-np", "2"], env,
             work / "logs" / "plan.log")

    total = args.runs * len(args.tasks) * len(args.variants)
    number = 0
    for run in range(args.runs):
        results = work / f"results_run{run}"
        for task_kind in args.tasks:
            for variant in args.variants:
                number += 1
                trainer = VARIANTS[variant]
                folder = results / dataset / f"{trainer}__nnUNetPlans__{TASKS[task_kind]}" / "fold_0"
                state = training_state(str(folder))
                print(f"[{number}/{total}] run {run} {task_kind} {variant}: "
                      f"{'done before' if state == TRAINED else 'training'}", flush=True)
                if state == TRAINED:
                    continue
                extra = {RESUME: ["--c"], VALIDATE: ["--val"]}.get(state, [])
                _run(["nnUNetv2_train", DEFAULT_TASK_ID, TASKS[task_kind], "0", "-tr", trainer, "-device",
                      args.device, *extra],
                     {**env, "nnUNet_results": str(results), "NNUNET_ATTENTION_STUDY_SEED": str(run),
                      "nnUNet_n_proc_DA": os.environ.get("nnUNet_n_proc_DA", "0")},  # augment in-process: seeded
                     work / "logs" / f"run{run}_{task_kind}_{variant}.log")
    study = collect(work, dataset, args)
    (work / "study.json").write_text(json.dumps(study, indent=2))
    (work / "study.md").write_text(render(study))
    plot(study, work / "study_curves.png")
    print(render(study))
    print(f"\n{work / 'study.md'}, {work / 'study.json'}, {work / 'study_curves.png'}")


def collect(work: Path, dataset: str, args) -> dict:
    """Per task and variant: pseudo Dice per epoch and final validation Dice of every run."""
    study = {"iterations_per_epoch": args.iterations, "epochs": args.epochs, "runs": args.runs,
             "validation_cases_of": "fold 0", "tasks": {}}
    for task_kind in args.tasks:
        study["tasks"][task_kind] = {}
        for variant in args.variants:
            pseudo, final = [], []
            for run in range(args.runs):
                folder = (work / f"results_run{run}" / dataset /
                          f"{VARIANTS[variant]}__nnUNetPlans__{TASKS[task_kind]}" / "fold_0")
                logging = load_checkpoint(str(folder / "checkpoint_final.pth"), mmap=True)["logging"]
                pseudo.append([float(v) for v in logging["mean_fg_dice"]][:args.epochs])
                summary = json.loads((folder / "validation" / "summary.json").read_text())
                final.append(float(summary["foreground_mean"]["Dice"]))
            study["tasks"][task_kind][variant] = {"pseudo_dice_per_epoch": pseudo, "validation_dice": final}
    return study


def _mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if values.size > 1 else 0:.3f}"


def render(study: dict) -> str:
    per_epoch = study["iterations_per_epoch"]
    lines = [f"Pseudo Dice (nnU-Net's mean foreground Dice on the epoch's validation patches) after N iterations and "
             f"the final validation Dice (fold 0's validation cases), mean ± sd over {study['runs']} runs (seeds).",
             ""]
    for task_kind, variants in study["tasks"].items():
        checkpoints = [(e + 1) * per_epoch for e in range(study["epochs"])]
        lines += [f"### {task_kind} ({TASKS[task_kind]})", "",
                  "| variant | " + " | ".join(f"{n} it" for n in checkpoints) + " | validation Dice |",
                  "|---|" + "---|" * (len(checkpoints) + 1)]
        for variant, v in variants.items():
            cells = [_mean_sd([run[e] for run in v["pseudo_dice_per_epoch"]]) for e in range(study["epochs"])]
            lines.append(f"| {variant} | " + " | ".join(cells) + f" | {_mean_sd(v['validation_dice'])} |")
        lines.append("")
    return "\n".join(lines)


def plot(study: dict, path: Path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(study["tasks"]), 4), layout="tight")
    axes = fig.subplots(1, len(study["tasks"]), squeeze=False)[0]
    for ax, (task_kind, variants) in zip(axes, study["tasks"].items()):
        for colour, (variant, v) in zip(("black", "tab:blue", "tab:orange", "tab:green"), variants.items()):
            x = [(e + 1) * study["iterations_per_epoch"] for e in range(study["epochs"])]
            runs = np.array(v["pseudo_dice_per_epoch"])
            for run in runs:
                ax.plot(x, run, color=colour, lw=0.6, alpha=0.4)
            ax.plot(x, runs.mean(0), color=colour, lw=2, marker="o", label=variant)
        ax.set_title(f"{task_kind}: pseudo Dice")
        ax.set_xlabel("iterations")
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
