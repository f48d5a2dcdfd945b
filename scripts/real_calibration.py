"""compare's verdict held against the truth on real nnU-Net trainings; resumable, every training kept.

    python scripts/real_calibration.py -o /work/real_calibration train      # background, hours; re-run resumes
    python scripts/real_calibration.py -o WORK train --truths 0 --records docs/demo_calibration_records  # the demo's
    python scripts/real_calibration.py -o /work/real_calibration report --report-dir docs

`nnunet-attention synth` is a population: each seed draws a new dataset from it. This script samples exactly the demo's
settings of the checkout (demo.current_settings: its generated task, configuration 2d, nnU-Net's folds 0-4, the
demo's trainers nnUNetTrainerDemo / nnUNetTrainerAttentionDemo, paired with the demo's seed, two trainings at a time;
a work folder keeps the settings it was started with in settings.json and refuses others) and
runs three kinds of unit, interleaved so that a run cut short stays balanced:

- **study k**: a fresh dataset (synth seed 1000 + k, task id 990 - k; study 0 is the demo's own run) through the
  demo's own steps (synth, nnUNetv2_convert_MSD_dataset, nnUNetv2_plan_and_preprocess, `nnunet-attention train ...
  --seed` for both trainers on the five folds), then compare's pipeline with the demo's margins: its verdict, CI
  and per-fold differences;
- **truth pair t**: a fresh dataset of n_train = 16 cases (what a fold of a 5-fold CV of 20 trains on; synth seed
  5000 + t), both trainers trained on all of it (fold "all", paired with seed t), each model predicting one large
  common test set (60 new cases, synth seed 9999) with nnUNetv2_predict's defaults (`predict`), scored by
  nnUNetv2_evaluate_folder; the pair's difference B - A of the mean over test cases of each case's foreground-mean
  Dice (the verdict's Dice);
- **unpaired arm of study k** (the first few studies): the same folds trained by nnUNetv2_train as is, for the
  pairing variance ratio (paired vs unpaired fold differences of the same folds).

**Records** (`train --records DIR`, e.g. docs/demo_calibration_records): each finished study or truth pair is also
packed into DIR/NAME.tar.xz, everything compare and `report` read (validation predictions and summaries, training
logs, pairing records, the references and the dataset's JSON files) but not its checkpoints, probabilities, plots or
images; a later run into a new work folder unpacks the records it lacks and trains only what none holds, so that a
calibration committed as records survives the machine its trainings ran on.

`report` recomputes every finished study's verdict with the compare code of the checkout and writes
REPORT_DIR/real_calibration.json and real_calibration.md: the truth with its CI, each study, coverage with its Wilson
interval, the outcomes' frequencies, the fold correlation rho measured against the truth (with a bootstrap CI over
studies) and the pairing variance ratio (with an F interval).
"""
import argparse
import io
import json
import os
import platform
import shutil
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from nnunet_attention.nnunet_api import bounded_export_workers
from nnunet_attention.study import demo, steps
from nnunet_attention.study.executor import LocalExecutor
from nnunet_attention.study.steps import DONE, NEW, Folders, Step
from nnunet_attention.study.synth import DEFAULT_TASK_ID, TASK_NAME

STUDY_SEED0, TRUTH_SEED0, TEST_SEED = demo.SYNTH_SEED, 5000, 9999
# study k: task id 990 - k (the id names the dataset, which seeds the pairing streams: study 0 is the demo's run; the
# executor tells the studies' steps apart by their datasets)
STUDY_ID0, TRUTH_ID0, TEST_ID = DEFAULT_TASK_ID, 500, 999
N_TRAIN = demo.SYNTH_CASES * 4 // 5  # what one fold of nnU-Net's 5-fold cross-validation trains on
TEST_CASES = 60
MARGIN_CANDIDATES = (0.05, 0.06, 0.07, 0.08, 0.09, 0.10)  # the demo's Dice margin is chosen among these
TRAINERS = list(demo.DEMO_TRAINERS)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (floating-point results differ between CPU kinds)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    except OSError:
        return platform.processor() or "unknown"


def machine_in_words() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, cpu ({cpu_model()})"


def dataset(task_id: int) -> str:
    return f"Dataset{task_id:03d}_{TASK_NAME}"


def study_task_id(k: int) -> int:
    """Study k's task id, 990 - k: study 0 is the demo's own run (the id names the dataset, which seeds pairing)."""
    return STUDY_ID0 - k


def study_dataset(k: int) -> str:
    return dataset(study_task_id(k))


def roots(work: Path, name: str) -> dict:
    base = work / name
    env = dict(os.environ, nnUNet_raw=str(base / "raw"), nnUNet_preprocessed=str(base / "preprocessed"),
               nnUNet_results=str(base / "results"))
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.makedirs(env[key], exist_ok=True)
    return env


def spec_for(name: str, folds, seed) -> steps.StudySpec:
    return demo.demo_spec(name, demo.DEMO_CONFIGURATION, list(folds), TRAINERS, "cpu", seed, 1)


def with_env(step_list, env):
    """Each step runs in its own unit's nnU-Net folders: the command wrapped in env(1) with that unit's variables."""
    prefix = ("env", *(f"{k}={env[k]}" for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")))
    return [replace(s, command=prefix + tuple(s.command)) for s in step_list]


def prepared(work: Path, name: str, task_id: int, seed: int, cases: int):
    env = roots(work, name)
    ds = dataset(task_id)
    msd = work / name / "msd" / f"Task{task_id:03d}_{TASK_NAME}"
    spec = spec_for(ds, demo.DEMO_FOLDS, demo.DEMO_SEED)
    synth = {"cases": cases, "test_cases": 0, "seed": seed, "shape": list(demo.SYNTH_SHAPE)}
    return env, ds, steps.prepare_steps(str(msd), spec, Folders.of(env), synth)


def study_units(work: Path, k: int, unpaired: bool):
    name = f"study_{k:03d}"
    env, ds, prep = prepared(work, name, study_task_id(k), STUDY_SEED0 + k, demo.SYNTH_CASES)
    plan = prep[-1].key
    train = [replace(s, after=(plan,)) for s in steps.train_steps(spec_for(ds, demo.DEMO_FOLDS, demo.DEMO_SEED), ds,
                                                                    Folders.of(env))]
    out = with_env(prep + train, env)
    if unpaired:
        env_u = dict(env, nnUNet_results=str(work / name / "results_unpaired"))
        os.makedirs(env_u["nnUNet_results"], exist_ok=True)
        arm = [replace(s, after=(plan,), trainer=s.trainer + "@unpaired")
               for s in steps.train_steps(spec_for(ds, demo.DEMO_FOLDS, None), ds, Folders.of(env_u))]
        out += with_env(arm, env_u)
    return out


def test_set_units(work: Path):
    env, ds, prep = prepared(work, "testset", TEST_ID, TEST_SEED, TEST_CASES)
    return with_env(prep[:2], env)  # synth and convert: the labelled cases in raw/imagesTr, labelsTr


def test_images(work: Path) -> Path:
    return work / "testset" / "raw" / dataset(TEST_ID)


def truth_units(work: Path, t: int):
    name = f"truth_{t:03d}"
    env, ds, prep = prepared(work, name, TRUTH_ID0 + t, TRUTH_SEED0 + t, N_TRAIN)
    spec = spec_for(ds, ["all"], t)
    train = [replace(s, after=(prep[-1].key,)) for s in steps.train_steps(spec, ds, Folders.of(env))]
    units = prep + train
    for trainer, training in zip(TRAINERS, train):
        output = work / name / "test_predictions" / trainer
        summary = output / "summary.json"
        model = Path(env["nnUNet_results"]) / ds / f"{trainer}__{demo.PLANS}__{demo.DEMO_CONFIGURATION}"

        def scored(summary=summary):
            return DONE if summary.is_file() else NEW

        images = test_images(work)
        predict = Step("predict", ds, (
            sys.executable, os.path.abspath(__file__), "-o", str(output), "predict", "--model", str(model),
            "--images", str(images / "imagesTr")), demo.DEMO_CONFIGURATION, "all", trainer, scored(),
            after=(training.key, f"convert/{dataset(TEST_ID)}"), check=scored)
        evaluate = Step("evaluate", ds, (
            "nnUNetv2_evaluate_folder", str(images / "labelsTr"), str(output), "-djfile", str(model / "dataset.json"),
            "-pfile", str(model / "plans.json"), "-np", "1"), demo.DEMO_CONFIGURATION, "all", trainer, scored(),
            after=(predict.key,), check=scored)
        units += [predict, evaluate]
    return with_env(units, env)


def predict(args):
    """nnUNetv2_predict's defaults (step 0.5, Gaussian, mirroring, checkpoint_final, fold all) through nnU-Net's
    public predictor, with the executor's share of the cores: nnUNetv2_predict sets every core whatever runs
    beside it, and two of them side by side on 2 cores spent 30-40 min on 60 cases of 20 slices instead of ~1."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_attention.devices import cpu_threads

    torch.set_num_threads(cpu_threads())
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(args.model, ("all",), "checkpoint_final.pth")
    predictor.predict_from_files(args.images, args.o, save_probabilities=False, overwrite=True,
                                 num_processes_preprocessing=1, num_processes_segmentation_export=1)


def schedule(work: Path, studies: int, truths: int, unpaired_studies: int):
    """Groups of units (folder name, steps) in the order they run: the test set, then study k (with its unpaired arm
    for the first unpaired_studies), truth pairs 2k and 2k+1."""
    order = [("testset", test_set_units(work))]
    for k in range(max(studies, (truths + 1) // 2)):
        if k < studies:
            order.append((f"study_{k:03d}", study_units(work, k, unpaired=k < unpaired_studies)))
        for t in (2 * k, 2 * k + 1):
            if t < truths:
                order.append((f"truth_{t:03d}", truth_units(work, t)))
    return order


# ---------------------------------------------------------------------------------------------------------------
# records: what compare and report read of a finished unit, committed where the trainings cannot be

RECORD_MARKER = "record.json"
RECORD_LEFT_OUT = (".pth", ".npz", ".pkl", ".png", ".npy", ".b2nd")  # checkpoints, probabilities, plots, arrays


def recorded(folder: Path, path: Path) -> bool:
    """Whether a unit's file belongs to its record: not raw or converted images, not the preprocessed arrays (a
    plans_configuration folder of nnUNet_preprocessed), not what RECORD_LEFT_OUT names."""
    parts = path.relative_to(folder).parts
    if parts[0] in ("raw", "msd") or path.suffix in RECORD_LEFT_OUT:
        return False
    return not (parts[0] == "preprocessed" and len(parts) > 3 and parts[2].startswith(f"{demo.PLANS}_"))


def pack_record(work: Path, name: str, records: Path) -> Path:
    """records/NAME.tar.xz from work/NAME (written beside, then renamed: a cut-off run leaves no half record)."""
    folder, target = work / name, records / f"{name}.tar.xz"
    records.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    marker = json.dumps({"record": name, "machine": machine_in_words(), "packed": time.strftime("%Y-%m-%d %H:%M:%S"),
                         "left_out": "checkpoints, probabilities, progress plots, raw and preprocessed images"},
                        indent=2).encode()
    with tarfile.open(partial, "w:xz") as tar:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and recorded(folder, p)):
            tar.add(path, arcname=str(path.relative_to(work)))
        info = tarfile.TarInfo(f"{name}/{RECORD_MARKER}")
        info.size, info.mtime = len(marker), int(time.time())
        tar.addfile(info, io.BytesIO(marker))
    os.replace(partial, target)
    return target


def restore_records(work: Path, records: Path) -> list:
    """Unpacks every record whose unit work lacks; the names restored."""
    restored = []
    for record in sorted(records.glob("*.tar.xz")) if records.is_dir() else []:
        name = record.name[:-len(".tar.xz")]
        if not (work / name).exists():
            with tarfile.open(record) as tar:
                tar.extractall(work, filter="data")
            restored.append(name)
    return restored


def from_record(work: Path, name: str) -> bool:
    return (work / name / RECORD_MARKER).is_file()


def stored_settings(work: Path) -> dict:
    return json.loads((work / "settings.json").read_text())


def check_settings(work: Path) -> None:
    """A work folder holds one calibration: the settings it was started with (settings.json, with the margins its
    studies are judged at: compare's defaults until the margin rule has chosen) must be this checkout's demo's, so
    that a resumed run does not mix two designs."""
    from nnunet_attention.compare.metrics import DEFAULT_MARGINS

    stored, current = work / "settings.json", demo.current_settings()  # what this script samples
    if not stored.is_file():
        work.mkdir(parents=True, exist_ok=True)
        stored.write_text(json.dumps({**current, "margins": DEFAULT_MARGINS}, indent=2) + "\n")
    elif demo.design_of(stored_settings(work)) != current:
        sys.exit(f"{work} holds a calibration of other demo settings ({stored}); use a new -o")


def train(args):
    from nnunet_attention.cli import exit_on_sigterm

    exit_on_sigterm()  # kill / SIGTERM stops the trainings this run started too (the executor ends them)
    work = Path(args.o).resolve()
    log = work / "calibration.log"

    def say(line):
        with open(log, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    check_settings(work)
    records = Path(args.records).resolve() if args.records else None
    if records:
        for name in restore_records(work, records):
            say(f"restored {name} from {records}")
    groups = [(name, units) for name, units in schedule(work, args.studies, args.truths, args.unpaired_studies)
              if not from_record(work, name)]
    units = [u for _, units in groups for u in units]
    todo = [u for u in units if not u.done]
    say(f"start: {len(todo)} of {len(units)} steps to run")

    def pack_finished():
        for name, group in groups:
            if (name != "testset" and not (records / f"{name}.tar.xz").is_file()
                    and all(u.refreshed().done for u in group)):
                say(f"record {pack_record(work, name, records)}")

    def ended(step, seconds, code):
        say(f"{'end' if code == 0 else f'FAILED ({code})'} {step.key} {seconds:.0f} s")
        if records and code == 0:
            pack_finished()
    env = dict(os.environ)
    env.setdefault("nnUNet_def_n_proc", bounded_export_workers())  # as the demo sets it (demo_environment)
    executor = LocalExecutor(env, str(work / "logs"), max_parallel=2,
                             on_start=lambda s, f: say(f"start {s.key}"), on_end=ended)
    if records:
        pack_finished()  # units finished by an earlier run without --records
    failed = executor.run_steps(units)
    for step in failed:
        say(f"not done: {step.key}")
    say("finished" if not failed else f"finished with {len(failed)} steps not done")


# ---------------------------------------------------------------------------------------------------------------
# report


def fold_dice(summary_file: Path) -> float:
    """Mean over cases of each case's foreground-mean Dice (classes whose Dice is NaN left out), as compare's
    headline row computes a fold's value."""
    cases = json.loads(summary_file.read_text())["metric_per_case"]
    per_case = [np.nanmean([float(m["Dice"]) if m["Dice"] is not None else np.nan for m in c["metrics"].values()])
                for c in cases]
    return float(np.nanmean(per_case))


def truth_pairs(work: Path):
    pairs = []
    for folder in sorted(work.glob("truth_*")):
        files = [folder / "test_predictions" / t / "summary.json" for t in TRAINERS]
        if all(f.is_file() for f in files):
            a, b = (fold_dice(f) for f in files)
            pairs.append({"pair": folder.name, "a": a, "b": b, "difference": b - a})
    return pairs


def study_verdict(work: Path, folder: Path, results: str, report_dir: Path):
    from nnunet_attention.compare.metrics import Margins
    from nnunet_attention.compare.pipeline import compare
    from nnunet_attention.compare.read import DatasetSource

    k = int(folder.name.split("_")[1])
    ds = study_dataset(k)
    res = folder / results / ds
    model_folds = [res / f"{t}__{demo.PLANS}__{demo.DEMO_CONFIGURATION}" / f"fold_{f}" / "validation" / "summary.json"
                   for t in TRAINERS for f in demo.DEMO_FOLDS]
    if not all(m.is_file() for m in model_folds):
        return None
    own = {f: fold_dice(model_folds[len(demo.DEMO_FOLDS) + i]) - fold_dice(model_folds[i])
           for i, f in enumerate(demo.DEMO_FOLDS)}
    out = report_dir / folder.name / results
    report = compare([DatasetSource(ds, str(res), str(folder / "preprocessed" / ds))], [demo.DEMO_CONFIGURATION],
                     TRAINERS, demo.PLANS, list(demo.DEMO_FOLDS), str(out), num_processes=1,
                     margins=Margins(stored_settings(work)["margins"]))
    dice = report.verdict[0].metrics["dice"]
    per_fold = [dice.per_fold_difference[str(f)] for f in demo.DEMO_FOLDS]
    # A class both trainers lost in a fold stays out of compare's headline for that fold, not out of summary.json's
    # mean: such folds are flagged, and the truth (summary.json's quantity on the test set) is compared as it is.
    differs = [f for f, v in zip(demo.DEMO_FOLDS, per_fold) if not np.isclose(v, own[f], atol=1e-9)]
    folds = len(demo.DEMO_FOLDS)
    return {"dataset_seed": STUDY_SEED0 + k, "per_fold_difference": per_fold,
            "fold_dice": {t: [fold_dice(m) for m in model_folds[i * folds:(i + 1) * folds]]
                          for i, t in enumerate(TRAINERS)},
            "summary_json_per_fold_difference": [own[f] for f in demo.DEMO_FOLDS],
            "folds_where_shared_loss_changed_the_headline": differs, "estimate": dice.estimate,
            "ci95": list(dice.hierarchical_ci95), "outcome": dice.outcome,
            "holds_to_correlation": dice.holds_to_correlation,
            "lost_in_folds": dice.lost_in_folds}


def wilson(hits: int, n: int, z: float = 1.959964):
    if n == 0:
        return [None, None]
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(centre - half), float(centre + half)]


def correlation_from_truth(studies, truth: float, rng: np.random.Generator, draws: int = 2000):
    """rho from E[(dbar - delta*)^2] / E[s^2 / J] = (1 + (J - 1) rho) / (1 - rho) (equicorrelated fold
    differences), with a percentile bootstrap over studies."""
    def rho(sample):
        d = np.array([s["per_fold_difference"] for s in sample])
        j = d.shape[1]
        ratio = np.mean((d.mean(axis=1) - truth) ** 2) / np.mean(d.var(axis=1, ddof=1) / j)
        return float((ratio - 1) / (ratio + j - 1))

    estimate = rho(studies)
    boot = [rho([studies[i] for i in rng.integers(0, len(studies), len(studies))]) for _ in range(draws)]
    return {"estimate": estimate, "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "method": "(R - 1) / (R + J - 1), R = mean (dbar - truth)^2 / mean (s^2 / J), bootstrap over studies; the "
                      "truth's own uncertainty not propagated"}


def pairing_ratio(work: Path):
    from scipy import stats

    paired, unpaired = [], []
    for folder in sorted(work.glob("study_*")):
        k = int(folder.name.split("_")[1])
        ds = study_dataset(k)
        for arm, into in (("results", paired), ("results_unpaired", unpaired)):
            res = folder / arm / ds
            files = [[res / f"{t}__{demo.PLANS}__{demo.DEMO_CONFIGURATION}" / f"fold_{f}" / "validation" /
                      "summary.json" for t in TRAINERS] for f in demo.DEMO_FOLDS]
            if (folder / "results_unpaired").is_dir() and all(x.is_file() for pair in files for x in pair):
                into.append([fold_dice(b) - fold_dice(a) for a, b in files])
    n = min(len(paired), len(unpaired))
    if n == 0:
        return None
    # fold-level spread within each study (the study's own dataset and folds removed by centring per study)
    p = np.concatenate([np.array(x) - np.mean(x) for x in paired[:n]])
    u = np.concatenate([np.array(x) - np.mean(x) for x in unpaired[:n]])
    df = n * (len(demo.DEMO_FOLDS) - 1)
    ratio = float(u.var(ddof=0) * len(u) / df / (p.var(ddof=0) * len(p) / df))
    lo, hi = (ratio / stats.f.ppf(q, df, df) for q in (0.975, 0.025))
    return {"estimate": ratio, "ci95": [float(lo), float(hi)], "fold_pairs": int(len(p)),
            "method": "unpaired / paired variance of the per-fold difference B - A around each study's mean, same "
                      "datasets and folds; F interval"}


def informative(ci, margin: float) -> bool:
    """Whether compare's Dice verdict with this 95% CI is informative at this margin: equivalent (the CI inside
    +-margin) or better / worse (the CI wholly on one side of 0; with one row, Holm's p < 0.05 is the same)."""
    return (-margin <= ci[0] and ci[1] <= margin) or ci[0] > 0 or ci[1] < 0


def decisiveness(studies, rng: np.random.Generator, draws: int = 20000):
    """How often the demo's design is informative at each candidate Dice margin: counted over the studies, and over
    studies resampled from them (each resampled study: the pooled mean plus five fold residuals drawn with
    replacement from all studies' residuals around their own means, scaled by sqrt(J / (J - 1)), through compare's
    corrected t), which keeps the folds' skew and tails. The margin rule (fixed before the studies were read): the
    smallest candidate at which the resampled rate is at least 0.90."""
    from scipy import stats

    from nnunet_attention.compare.statistics import overlap_variance_factor

    x = np.array([s["per_fold_difference"] for s in studies])
    j = x.shape[1]
    residuals = ((x - x.mean(axis=1, keepdims=True)) * np.sqrt(j / (j - 1))).ravel()
    sample = x.mean() + rng.choice(residuals, size=(draws, j))
    half = stats.t.ppf(0.975, j - 1) * sample.std(axis=1, ddof=1) * np.sqrt(overlap_variance_factor(j, 1 / (j - 1)) / j)
    lo, hi = sample.mean(axis=1) - half, sample.mean(axis=1) + half
    rows = []
    for margin in MARGIN_CANDIDATES:
        resampled = float(np.mean(((-margin <= lo) & (hi <= margin)) | (lo > 0) | (hi < 0)))
        hits = sum(informative(s["ci95"], margin) for s in studies)
        rows.append({"margin": margin, "studies_informative": hits, "studies": len(studies),
                     "studies_informative_ci95": wilson(hits, len(studies)), "resampled_rate": resampled})
    chosen = next((r["margin"] for r in rows if r["resampled_rate"] >= 0.90), None)
    return {"fold_difference_sd": float(residuals.std()), "fold_difference_mean": float(x.mean()),
            "by_margin": rows, "rule": "smallest margin with resampled_rate >= 0.90", "chosen_margin": chosen}


def demo_study(result: dict, source: str) -> dict:
    """What the demo quotes from this calibration (package data, nnunet_attention/study/data/demo_study.json)."""
    studies = result["studies"]
    trainers = []
    for t in TRAINERS:
        values = [v for s in studies for v in s["fold_dice"][t]]
        lost = sum(len(s["lost_in_folds"]["a" if t == TRAINERS[0] else "b"]) for s in studies)
        trainers.append({"trainer": t, "mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)),
                         "trainings": len(values), "lost": lost})
    d = np.array([s["per_fold_difference"] for s in studies])
    first = next(s for s in studies if s["dataset_seed"] == demo.SYNTH_SEED)  # the demo's own run
    return {"source": source, "settings": result["settings"], "studies": len(studies), "trainers": trainers,
            "first_study": {k: first[k] for k in ("dataset_seed", "per_fold_difference", "ci95", "outcome")},
            "difference": {"n": int(d.size), "min": float(d.min()), "max": float(d.max()),
                           "sd": result["summary"]["decisiveness"]["fold_difference_sd"]},
            "outcomes": result["summary"]["outcomes"], "decisiveness": result["summary"]["decisiveness"]}


def pairing_sentence(ratio: dict) -> str:
    return (f"Pairing: the unpaired fold differences of the first studies vary {ratio['estimate']:.1f} times as much "
            f"as the paired ones (95% CI {ratio['ci95'][0]:.1f} to {ratio['ci95'][1]:.1f}, {ratio['fold_pairs']} fold "
            f"pairs per arm).")


def demo_markdown(result: dict, name: str) -> str:
    """NAME.md for the demo's calibration: what it sampled, how often each candidate margin decides, the outcomes."""
    st, summary = result["settings"], result["summary"]
    decided = summary["decisiveness"]
    study = demo_study(result, f"docs/{name}.md")
    lines = [f"# The demo's design, measured on real nnU-Net trainings ({summary['studies']} studies)", "",
             f"Machine: {result['machine']}, two trainings at a time. Trainings: "
             f"`python scripts/real_calibration.py -o WORK train --truths 0 --unpaired-studies 4 --records "
             f"docs/{name}_records` (background, resumable, every training kept in WORK; what compare reads of "
             f"each study committed in docs/{name}_records); this page, its JSON and the demo's package data: "
             f"`{result['command']}`.", "",
             f"Settings: the generated task of {st['cases']} training cases of {'x'.join(map(str, st['shape']))} "
             f"voxels "
             f"(synth seed {STUDY_SEED0} + k and task id {STUDY_ID0} - k for study k; study 0 is the demo's own run), "
             f"configuration "
             f"{st['configuration']}, nnU-Net's folds {' '.join(map(str, st['folds']))}, {st['trainers'][0]} vs "
             f"{st['trainers'][1]} ({st['schedule'][0]} epochs of {st['schedule'][1]} iterations, "
             f"{'' if st['validation_mirroring'] else 'validation without mirroring, '}paired with seed {st['seed']}); "
             f"each study is `nnunet-attention demo`'s own steps on a fresh dataset, then compare.", "",
             "## How often such a run decides (Dice)", "",
             f"Per-fold difference B − A: mean {decided['fold_difference_mean']:+.4f}, sd within a study "
             f"{decided['fold_difference_sd']:.4f} ({study['difference']['n']} fold pairs, range "
             f"{study['difference']['min']:+.3f} to {study['difference']['max']:+.3f}).", "",
             "| Dice margin | studies informative | Wilson 95% | resampled rate |", "|---|---|---|---|"]
    for r in decided["by_margin"]:
        lo, hi = r["studies_informative_ci95"]
        lines.append(f"| ±{r['margin']:g} | {r['studies_informative']} / {r['studies']} | "
                     f"{100 * lo:.0f}%–{100 * hi:.0f}% | {100 * r['resampled_rate']:.1f}% |")
    lines += ["", f"Informative: equivalent (the CI inside ±margin) or better / worse (the CI off 0). Resampled: "
                  f"20,000 studies of the pooled mean plus five fold residuals drawn from all studies' residuals, "
                  f"through compare's corrected t. The rule, fixed before the studies were read: {decided['rule']}. "
                  f"Chosen: **Dice ±{decided['chosen_margin']:g}** (IoU and NSD the same; HD95 ±2 mm).", "",
              *([pairing_sentence(summary["pairing_variance_ratio"]), ""] if summary.get("pairing_variance_ratio")
                else []),
              "## At the chosen margins", "",
              "Outcomes: " + ", ".join(f"{k} {v}" for k, v in summary["outcomes"].items()) + ".", ""]
    lines += [f"- {t['trainer']}: validation mean Dice {t['mean']:.3f} ± {t['sd']:.3f} over {t['trainings']} "
              f"trainings, {t['lost']} lost a class" for t in study["trainers"]]
    lines += ["", "| dataset seed | per-fold B − A | estimate | corrected 95% CI | outcome |", "|---|---|---|---|---|"]
    for s in result["studies"]:
        lines.append(f"| {s['dataset_seed']} | {', '.join(f'{v:+.3f}' for v in s['per_fold_difference'])} | "
                     f"{s['estimate']:+.4f} | {s['ci95'][0]:+.3f} to {s['ci95'][1]:+.3f} | {s['outcome']} |")
    return "\n".join(lines) + "\n"


def report(args):
    from scipy import stats

    work = Path(args.o).resolve()
    out = Path(args.report_dir)
    scratch = work / "reports"
    shutil.rmtree(scratch, ignore_errors=True)
    pairs = truth_pairs(work)
    studies = [s for s in (study_verdict(work, f, "results", scratch) for f in sorted(work.glob("study_*"))) if s]
    d = np.array([p["difference"] for p in pairs])
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None
    truth = {"estimate": float(d.mean()) if len(d) else None,
             "ci95": [float(d.mean() - half), float(d.mean() + half)] if half is not None else None,
             "trainings": 2 * len(d), "pairs": pairs, "n_train": N_TRAIN, "test_cases": TEST_CASES}
    covered = [s["ci95"][0] <= truth["estimate"] <= s["ci95"][1] for s in studies] if len(d) else []
    outcomes = {o: sum(s["outcome"] == o for s in studies) for o in ("better", "worse", "equivalent", "inconclusive")}
    summary = {"studies": len(studies), "coverage": float(np.mean(covered)) if covered else None,
               "coverage_ci95": wilson(int(np.sum(covered)), len(covered)), "outcomes": outcomes,
               "fold_correlation": correlation_from_truth(studies, truth["estimate"], np.random.default_rng(0))
               if len(studies) > 2 and len(d) else None,
               "pairing_variance_ratio": pairing_ratio(work),
               "study_ci_width_median": float(np.median([s["ci95"][1] - s["ci95"][0] for s in studies]))
               if studies else None}
    result = {"settings": stored_settings(work),
              "machine": machine_in_words(),
              "command": " ".join(["python", "scripts/real_calibration.py", *sys.argv[1:]]),
              "truth": truth, "studies": studies, "summary": summary}
    if studies:
        summary["decisiveness"] = decisiveness(studies, np.random.default_rng(0))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.demo_data:
        if demo.design_of(stored_settings(work)) != demo.current_settings():
            sys.exit(f"--demo-data: {work} holds a calibration of other settings than this checkout's demo")
        chosen = summary["decisiveness"]["chosen_margin"]
        if stored_settings(work)["margins"]["dice"] != chosen:
            sys.exit(f"--demo-data: the margin rule chose Dice ±{chosen}; set it (and IoU's and NSD's) in "
                     f"{work}/settings.json and run report again, so that the studies' outcomes are at the demo's "
                     f"margins")
        Path(demo.STUDY_FILE).write_text(json.dumps(demo_study(result, f"docs/{args.name}.md"), indent=2) + "\n")
        (out / f"{args.name}.md").write_text(demo_markdown(result, args.name))
    print(json.dumps(summary, indent=2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", required=True, help="work folder (every unit's nnU-Net folders; re-running resumes); "
                                                  "predict: the predictions' folder")
    parser.add_argument("action", choices=("train", "report", "predict"))
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--truths", type=int, default=24, help="truth pairs")
    parser.add_argument("--unpaired-studies", type=int, default=4,
                        help="studies whose folds are also trained unpaired (4 x 5 folds = 20 fold pairs per arm)")
    parser.add_argument("--records", help="train: pack each finished study and truth pair into RECORDS/NAME.tar.xz "
                                          "(no checkpoints) and unpack the records the work folder lacks first")
    parser.add_argument("--report-dir", default="docs")
    parser.add_argument("--name", default="real_calibration", help="report: REPORT_DIR/NAME.json")
    parser.add_argument("--demo-data", action="store_true",
                        help="report: also write the demo's shipped study (nnunet_attention/study/data/"
                             "demo_study.json) from this calibration; its settings must be the checkout's demo's")
    parser.add_argument("--model", help="predict: a trained model's folder (fold_all)")
    parser.add_argument("--images", help="predict: the images to predict")
    args = parser.parse_args()
    {"train": train, "report": report, "predict": predict}[args.action](args)


if __name__ == "__main__":
    main()
