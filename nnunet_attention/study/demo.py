"""Gated vs ungated on one task, end to end, through nnU-Net's own commands; re-running resumes.

synth -> nnUNetv2_convert_MSD_dataset -> nnUNetv2_plan_and_preprocess -> nnUNetv2_train (both trainers, same
splits, matched schedules) -> nnUNetv2_find_best_configuration (across both) -> predict imagesTs with the chosen
model or ensemble -> compare.
"""
import functools
import glob
import json
import os
import re
import time
from dataclasses import replace
from typing import List, Mapping, Optional, Sequence, Tuple

from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.nnunet_api import bounded_export_workers, check_export_workers
from nnunet_attention.study import steps
from nnunet_attention.study.executor import LocalExecutor, run_or_raise
from nnunet_attention.study.steps import RESUME, VALIDATE, Folders, StudySpec
from nnunet_attention.study.synth import DEFAULT_TASK_ID, task_folder_name

# what nnU-Net prints that is worth showing while a step runs; the rest goes to the step's log file
_SHOWN = re.compile(r"Epoch \d+$|train_loss|val_loss|Pseudo dice|Epoch time|Mean Validation Dice|\*Best\*|"
                    r"Error|error:|Traceback")
PLANS = "nnUNetPlans"
SYNTH_CASES, SYNTH_TEST_CASES, SYNTH_SHAPE = 40, 4, (10, 48, 48)
# The demo's dataset: the first of its calibration's studies (scripts/real_calibration.py draws study k with synth
# seed 1000 + k; study 0 under the demo's task id), so that the demo's trainings are that study's, on record in
# docs/demo_calibration.md (seed 0, the earlier default, drew a dataset the design could not decide on; docs/demo.md).
SYNTH_SEED = 1000
# The demo's settings, chosen with the study in docs/init_study.md (its figures ship in data/demo_study.json): 2d,
# nnU-Net's five folds (the verdict's corrected t over one 5-fold cross-validation, variance x 2.25, is 0.83x as wide
# as over folds 0-3, variance x 2: t 2.78 sqrt(2.25/5) against 3.18 sqrt(2/4); docs/demo.md), nnUNetTrainerDemo's
# schedule (5 epochs of 50 iterations), paired trainings, two at a time on the CPU.
DEMO_CONFIGURATION, DEMO_FOLDS = "2d", steps.NNUNET_FOLD_IDS
DEMO_TRAINERS = ("nnUNetTrainerDemo", "nnUNetTrainerAttentionDemo")
STUDY_FILE = os.path.join(os.path.dirname(__file__), "data", "demo_study.json")
# Paired trainings (pairing.py): both trainers of a fold share this study seed's randomness, so that the demo repeats
# exactly on a machine and its per-fold differences vary less (docs/init_study.md).
DEMO_SEED = 0


STUDIED = "The study at exactly these settings"


def demo_schedule() -> List[int]:
    """[epochs, iterations per epoch, validation batches per epoch] of the demo's trainers."""
    from nnunet_attention.model.trainers import nnUNetTrainerDemo as t

    return list(t.schedule)


@functools.lru_cache(maxsize=1)
def load_study() -> dict:
    """The calibration at the demo's settings as shipped with the package (written by scripts/real_calibration.py
    report --demo-data)."""
    with open(STUDY_FILE) as f:
        return json.load(f)


def demo_margins() -> dict:
    """The demo's equivalence margins at its studied settings: the shipped calibration's, chosen there by a rule
    fixed before its studies were read (the smallest Dice margin at which 90% of such runs decide; docs/demo.md)."""
    return dict(load_study()["settings"]["margins"])


def design_of(settings: dict) -> dict:
    """A calibration's settings without its margins: what must equal current_settings() for it to describe the demo."""
    return {k: v for k, v in settings.items() if k != "margins"}


def current_settings() -> dict:
    """The demo's settings as the shipped study records them (its margins aside)."""
    from nnunet_attention.model.trainers import nnUNetTrainerDemo

    return {"configuration": DEMO_CONFIGURATION, "trainers": list(DEMO_TRAINERS), "folds": list(DEMO_FOLDS),
            "schedule": demo_schedule(), "validation_mirroring": nnUNetTrainerDemo.validation_mirroring,
            "cases": SYNTH_CASES, "shape": list(SYNTH_SHAPE), "task_id": DEFAULT_TASK_ID, "seed": DEMO_SEED}


def studied_settings(studied_task: bool, configuration: str, trainers: Sequence[str], folds: Sequence,
                     seed: Optional[int] = DEMO_SEED) -> bool:
    """Whether the demo runs at the settings of the shipped study: its generated task, configuration, trainers,
    schedule, nnU-Net's five folds and paired trainings with its seed."""
    settings = load_study()["settings"]
    return (studied_task and configuration == settings["configuration"] and list(trainers) == settings["trainers"]
            and [str(f) for f in folds] == [str(f) for f in settings["folds"]] and seed == settings["seed"]
            and design_of(settings) == current_settings())


def demo_note(studied_task: bool, configuration: str, trainers: Sequence[str], folds: Sequence,
              seed: Optional[int] = DEMO_SEED) -> str:
    """The report's line on how such runs vary: what the calibration at the demo's settings measured (fresh
    datasets of the generated task through these very steps), or a warning that these settings were not studied."""
    study = load_study()
    if not studied_settings(studied_task, configuration, trainers, folds, seed):
        return (f"These settings were not part of the calibration in {study['source']}: how much one training "
                f"differs from the next here is not known; read the verdict's fold warnings.")
    per_trainer = "; ".join(
        f"{t['trainer']}: validation mean Dice {t['mean']:.3f} ± {t['sd']:.3f} over {t['trainings']} trainings, "
        f"{t['lost']} lost a class" for t in study["trainers"])
    d, decided = study["difference"], study["decisiveness"]
    margin = next(r for r in decided["by_margin"] if r["margin"] == study["settings"]["margins"]["dice"])
    return (f"{STUDIED} ({study['source']}: {study['studies']} fresh datasets of this task through these steps, "
            f"{d['n']} paired fold differences): {per_trainer}. One fold's difference B - A ranged {d['min']:+.3f} "
            f"to {d['max']:+.3f} (sd {d['sd']:.3f} within a study): a single fold's difference is not a finding, and "
            f"the verdict above uses the spread between folds for that reason. At Dice ±{margin['margin']:g}, "
            f"{margin['studies_informative']} of {margin['studies']} such studies decided (resampled: "
            f"{100 * margin['resampled_rate']:.0f}%).")


def reproduction_line(per_fold_difference: Mapping[str, float]) -> str:
    """Whether this run's per-fold Dice differences are the calibration's study 0's (the demo's dataset and pairing
    streams): on the machine kind it ran on they repeat to the last digit; elsewhere floating point differs."""
    study = load_study()
    recorded = study["first_study"]["per_fold_difference"]
    gap = max(abs(per_fold_difference[str(f)] - v) for f, v in zip(study["settings"]["folds"], recorded))
    if gap < 1e-9:
        return (f"Reproduced: these trainings' per-fold differences B - A are the calibration's study 0 "
                f"({study['source']}) to the last digit.")
    return (f"Not the record: these per-fold differences differ from the calibration's study 0 ({study['source']}) "
            f"by up to {gap:.4f} (another CPU kind or library version trains other numbers); the calibration's rates "
            f"describe such runs, its study 0 is not this one.")


def matched_trainers(epochs: Optional[int], device: str, trainers: Optional[Sequence[str]] = None) -> List[str]:
    """The trainer pair: the demo's own on the CPU by default, else nnUNetTrainer and nnUNetTrainerAttention (or the
    pair given); with epochs (100 on cuda by default), each one's version on nnU-Net's schedule of that length."""
    from nnunet_attention.model.trainers import schedule_version

    if trainers is not None and epochs is None:
        return list(trainers)
    if trainers is None and epochs is None:
        if device == "cpu":
            return list(DEMO_TRAINERS)
        epochs = 100
    return [schedule_version(trainer, epochs) for trainer in trainers or ("nnUNetTrainer", "nnUNetTrainerAttention")]


def demo_environment(workdir: str) -> dict:
    """The environment the demo's nnU-Net commands run in (this process's stays as it is): nnU-Net's three folders
    the user's if set, else inside workdir; nnUNet_def_n_proc, unless set, at most the CPU count (nnU-Net's default
    of 8 export workers spends most of a small validation starting them). The demo's planning, find_best and compare
    take that many processes too (prepare)."""
    env = dict(os.environ)
    check_export_workers(env)
    env.setdefault("nnUNet_def_n_proc", bounded_export_workers())
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = env.get(name) or os.path.join(os.path.abspath(workdir), name)
        os.makedirs(env[name], exist_ok=True)
    return env


class Runner:
    """The demo's numbered steps, their commands run through executor.LocalExecutor with their logs in workdir/logs;
    steps already done are skipped. A command that runs alone has its progress lines echoed; for parallel trainings
    it prints, after the first epoch, when they will end, and again once the first training has ended."""

    def __init__(self, workdir: str, total: int, env: dict):
        self.logs = os.path.join(workdir, "logs")
        self.total, self.number, self.env = total, 0, env
        self.epochs: Optional[int] = None  # epochs per training, for the time estimate (None: no estimate)
        self.shorter = ""  # shorter_hint of the run
        self._trainings_left: Optional[Tuple[int, int]] = None  # (trainings, at once) until the estimate is out
        self._first: Optional[Tuple[int, int, float]] = None  # (trainings, at once, start) until the refined one

    def _header(self, title: str) -> str:
        self.number += 1
        return f"[{self.number}/{self.total}] {title}"

    def skip(self, title: str, reason: str):
        """A step that does not run, with the reason."""
        print(f"{self._header(title)}: skipped ({reason})", flush=True)

    def in_process(self, title: str):
        """A step this process does itself (compare)."""
        print(self._header(title), flush=True)

    def step(self, title: str, chain: Sequence[steps.Step]):
        """One numbered step: the commands of chain one after the other, unless all are done."""
        header = self._header(title)
        if all(s.done for s in chain):
            print(f"{header}: done before, skipped (its results exist)", flush=True)
            return
        print(header, flush=True)
        start = time.time()
        names = {s.key: self._log_name(title, i if len(chain) > 1 else None) for i, s in enumerate(chain)}
        echo = (lambda step, line: _SHOWN.search(line) and print(f"    {line.rstrip()}", flush=True))
        self._run(chain, 1, names, on_line=echo)
        print(f"    finished in {time.time() - start:.0f} s", flush=True)

    def parallel_steps(self, trainings: Sequence[steps.Step], at_once: int, label: str = ""):
        """Training steps, each numbered (its title after label), at most at_once running; an interruption stops
        them; a failure lets the others end, then raises."""
        headers, names = {}, {}
        notes = {RESUME: " (resuming)", VALIDATE: " (validating)"}
        for step in trainings:
            title = f"{label}train {step.trainer} fold {step.fold}{notes.get(step.state, '')}"
            headers[step.key] = self._header(title)
            names[step.key] = self._log_name(title)
            if step.done:
                print(f"{headers[step.key]}: done before, skipped (its results exist)", flush=True)
        pending = sum(not s.done for s in trainings)
        self._trainings_left = (pending, at_once)
        self._first = (pending, at_once, time.time())
        first_key = next((s.key for s in trainings if not s.done), None)

        def started(step, log_file):
            print(f"{headers[step.key]} (started {time.strftime('%H:%M:%S')})", flush=True)
            print(f"    $ {' '.join(step.command)}\n    log: {log_file}", flush=True)

        def ended(step, seconds, code):
            print(f"{headers[step.key]}: {'finished' if code == 0 else f'failed (exit {code})'} in {seconds:.0f} s",
                  flush=True)
            if code == 0:
                self._refine(seconds)

        def line(step, text):
            if step.key == first_key:
                self._estimate(text)

        self._run(trainings, at_once, names, on_start=started, on_end=ended, on_line=line)

    def _run(self, chain: Sequence[steps.Step], at_once: int, names: dict, on_start=None, on_end=None,
             on_line=None):
        def announce(step, log_file):
            print(f"    $ {' '.join(step.command)}\n    log: {log_file}", flush=True)

        run_or_raise(LocalExecutor(self.env, self.logs, at_once, log_name=lambda step: names[step.key],
                                   on_start=on_start or announce, on_end=on_end, on_line=on_line), chain)

    def _estimate(self, output: str):
        """Once nnU-Net's output of the first training has an epoch time: prints when the trainings will end and how
        to shorten them (once per parallel_steps; nothing when the schedule's epochs are not known)."""
        times = re.findall(r"Epoch time: ([0-9.]+) s", output)
        if not times or not self._trainings_left:
            return
        trainings, at_once = self._trainings_left
        self._trainings_left = None
        if self.epochs is None:
            return
        seconds = float(times[0]) * self.epochs * -(-trainings // at_once)
        print(f"    estimate: the trainings end around {_clock(seconds)} (about {seconds / 60:.0f} min from now: "
              f"{trainings} trainings of {self.epochs} epochs at {float(times[0]):.0f} s per epoch, {at_once} at a "
              f"time; find_best, prediction and compare take a few minutes more).{self.shorter}", flush=True)

    def _refine(self, seconds: float):
        """After the first training has ended: the end of the trainings again, from its whole time (start-up and
        validation included), once per parallel_steps."""
        if not self._first:
            return
        trainings, at_once, started = self._first
        self._first = None
        left = seconds * -(-trainings // at_once) - (time.time() - started)
        if trainings > at_once:
            print(f"    estimate from the first whole training ({seconds:.0f} s): the trainings end around "
                  f"{_clock(left)}", flush=True)

    def _log_name(self, title: str, index: Optional[int] = None) -> str:
        suffix = "" if index is None else chr(ord("a") + index)
        return f"{self.number:02d}{suffix}_{re.sub(r'[^A-Za-z0-9]+', '_', title)[:60]}.log"


def _clock(seconds_from_now: float) -> str:
    return time.strftime("%H:%M", time.localtime(time.time() + seconds_from_now))


def _dataset_folder(root: str, dataset_id: int) -> Optional[str]:
    found = glob.glob(os.path.join(root, f"Dataset{dataset_id:03d}_*"))
    return found[0] if found else None


def _task_id(msd_folder: str) -> int:
    name = os.path.basename(os.path.normpath(msd_folder))
    match = re.fullmatch(r"Task(\d+)_[^_]+", name)
    if not match or not os.path.isfile(os.path.join(msd_folder, "dataset.json")):
        raise NnUNetAttentionError(f"-i must be an MSD task folder named TaskXX_Name with dataset.json, imagesTr, "
                                   f"labelsTr (e.g. Task04_Hippocampus); got {msd_folder}")
    return int(match.group(1))


def run_demo(workdir: str = "nnunet_attention_demo", msd_folder: Optional[str] = None,
             dataset_id: Optional[int] = None, configuration: Optional[str] = None, device: Optional[str] = None,
             folds: Optional[Sequence] = None, trainers: Optional[Sequence[str]] = None, epochs: Optional[int] = None,
             synth_cases: int = SYNTH_CASES, synth_shape=SYNTH_SHAPE,
             margins: Optional[Mapping[str, float]] = None, seed: Optional[int] = DEMO_SEED,
             trust_checkpoints: bool = False, retrain_other_seeds: bool = False) -> str:
    """Runs (or resumes) the whole comparison; returns the report folder. None: the demo's settings; margins go to
    compare (equivalence margins per metric; None: demo_margins() at the studied settings, else compare's defaults);
    seed pairs the trainings (None: unpaired, as nnUNetv2_train runs them); retrain_other_seeds lets it replace
    folds trained unpaired or under another seed."""
    from nnunet_attention.compare.metrics import Margins
    from nnunet_attention.compare.pipeline import DatasetSource, compare, print_summary
    from nnunet_attention.devices import resolve_device
    from nnunet_attention.files import check_output_folder
    from nnunet_attention.nnunet_api import find_trainer_class

    check_output_folder(workdir, *([msd_folder] if msd_folder else []))
    margins = None if margins is None else Margins.of(margins)
    device = resolve_device(device)
    configuration, folds = configuration or DEMO_CONFIGURATION, list(folds if folds is not None else DEMO_FOLDS)
    studied = (msd_folder is None and dataset_id is None and (synth_cases, tuple(synth_shape)) == (
        SYNTH_CASES, SYNTH_SHAPE))
    trainers = matched_trainers(epochs, device, trainers)
    if len(trainers) != 2:
        raise NnUNetAttentionError(f"-tr takes two trainer names (ungated, gated); got {len(trainers)}")
    for trainer in trainers:
        find_trainer_class(trainer)
    if msd_folder is not None:
        _task_id(msd_folder)  # a one-line error before anything runs
    note = demo_note(studied, configuration, trainers, folds, seed)
    calibrated = studied_settings(studied, configuration, trainers, folds, seed)
    if margins is None and calibrated:
        margins = Margins(demo_margins())
        print("Equivalence margins: " + ", ".join(f"{k} +-{v:g}" for k, v in margins.items()) +
              " (the demo's, chosen on its calibration by a rule fixed beforehand: docs/demo.md; --margin sets "
              "others)", flush=True)
    env = demo_environment(workdir)
    print("nnU-Net folders: " + ", ".join(f"{k}={env[k]}" for k in ("nnUNet_raw", "nnUNet_preprocessed",
                                                                    "nnUNet_results")), flush=True)
    print(f"Paired trainings: seed {seed} (both trainers of a fold see the same batches and start from the same "
          f"shared weights; on the CPU a training repeats exactly, on CUDA only approximately: docs/grid.md)"
          if seed is not None else "Unpaired trainings (nnUNetv2_train as is)",
          flush=True)
    runner = Runner(workdir, 6 + 2 * len(folds), env)
    runner.epochs = schedule_epochs(trainers[0])
    runner.shorter = shorter_hint(folds, runner.epochs, configuration)
    folders = Folders.of(env)
    spec = replace(prepare(runner, workdir, msd_folder, dataset_id, configuration, folds, trainers, device, seed,
                           {"cases": synth_cases, "test_cases": SYNTH_TEST_CASES, "shape": list(synth_shape),
                            "seed": SYNTH_SEED}),
                   trust_checkpoints=trust_checkpoints, retrain_other_seeds=retrain_other_seeds)
    dataset_name = spec.datasets[0]
    raw = os.path.join(folders.raw, dataset_name)
    preprocessed = os.path.join(folders.preprocessed, dataset_name)
    results = os.path.join(folders.results, dataset_name)
    trainings = steps.train_steps(spec, dataset_name, folders)
    steps.check_nothing_replaced(spec, trainings)
    runner.parallel_steps(trainings, trainings_at_once(spec.trainers, spec.device))
    runner.step("find the best configuration across both trainers",
                [steps.find_best_step(spec, dataset_name, folders, trainings)])
    test_output = _predict_test(runner, spec, folders, raw)

    report_dir = os.path.join(results, "nnunet_attention_compare")
    runner.in_process("compare the two trainers")
    report = compare([DatasetSource(dataset_name, results, preprocessed)], [configuration], trainers, PLANS, folds,
                     report_dir, num_processes=spec.processes, note=note, margins=margins)
    print_summary(report, report_dir)
    if calibrated:
        print(reproduction_line(report.verdict[0].metrics["dice"].per_fold_difference), flush=True)
    print(f"\nReport: {os.path.join(report_dir, 'report.md')}", flush=True)
    if test_output:
        print(f"Test predictions: {test_output}", flush=True)
    return report_dir


def prepare(runner: Runner, workdir: str, msd_folder: Optional[str], dataset_id: Optional[int],
            configuration: str, folds: Sequence, trainers: Sequence[str], device: str, seed: Optional[int],
            synth: dict) -> StudySpec:
    """Steps synth, convert and plan (steps.prepare_steps; synth only for the generated task, neither for a dataset
    already in nnUNet_raw); returns the demo's study of the prepared dataset."""
    folders = Folders.of(runner.env)
    processes = int(runner.env["nnUNet_def_n_proc"])  # checked by demo_environment
    if dataset_id is not None:
        runner.skip("synth", f"not needed: dataset {dataset_id} in nnUNet_raw is used")
        runner.skip("convert", f"not needed: dataset {dataset_id} is in nnU-Net's format already")
        raw = _dataset_folder(folders.raw, dataset_id)
        if raw is None:
            raise NnUNetAttentionError(f"no Dataset{dataset_id:03d}_* in nnUNet_raw={folders.raw}")
        spec = demo_spec(os.path.basename(raw), configuration, folds, trainers, device, seed, processes)
        runner.step("plan and preprocess", [steps.plan_step(spec, spec.datasets[0], folders)])
        return spec
    generated = msd_folder is None
    msd_folder = msd_folder or os.path.join(workdir, "msd", task_folder_name(DEFAULT_TASK_ID))
    spec = demo_spec(steps.converted_name(msd_folder), configuration, folds, trainers, device, seed, processes)
    prepared = steps.prepare_steps(msd_folder, spec, folders, synth if generated else None)
    if not generated:
        runner.skip("synth", f"not needed: the given MSD task {msd_folder} is used")
    titles = {"synth": f"synth: a generated MSD task in {msd_folder}", "convert": "convert the MSD task",
              "plan": "plan and preprocess"}
    for step in prepared:
        runner.step(titles[step.kind], [step])
    return spec


def demo_spec(dataset: str, configuration: str, folds: Sequence, trainers: Sequence[str], device: str,
              seed: Optional[int], processes: int) -> StudySpec:
    """The demo's study in the step model: one dataset and configuration, --npz (find_best ensembles), processes for
    planning and find_best, paired trainings with seed (None: unpaired, nnUNetv2_train)."""
    return StudySpec([dataset], [configuration], list(folds), list(trainers), PLANS, device, npz=True,
                    processes=processes, seed=seed)


MIN_SUGGESTED_EPOCHS = 5  # the demo's own schedule: fewer epochs would not compare the trainers


def shorter_hint(folds: Sequence, epochs: Optional[int], configuration: str) -> str:
    """" Shorter: ..." with what would shorten this run and is not already in effect ("" when nothing is left)."""
    from nnunet_attention.model.trainers import SCHEDULE_VERSIONS

    shorter = [e for e in SCHEDULE_VERSIONS["nnUNetTrainer"] if MIN_SUGGESTED_EPOCHS <= e < (epochs or 0)]
    options = [*(["fewer folds (-f 0 1)"] if len(folds) > 2 else []),
               *([f"a shorter schedule (--epochs {shorter[-1]})"] if shorter else []),
               *(["a smaller configuration (-c 2d)"] if configuration != "2d" else [])]
    return f" Shorter: {', '.join(options)}." if options else ""


def schedule_epochs(trainer: str) -> Optional[int]:
    """Epochs of a trainer's schedule, for the time estimate: the demo's and every schedule version's
    (trainers.SCHEDULE_VERSIONS); None for other trainers."""
    from nnunet_attention.model import trainers as ours

    if trainer in DEMO_TRAINERS:
        return ours.nnUNetTrainerDemo.schedule[0]
    return ours.schedule_epochs(trainer)


def trainings_at_once(trainers: Sequence[str], device: str) -> int:
    """Two on the CPU for the demo's trainers (each takes half the cores); otherwise one."""
    return 2 if device == "cpu" and list(trainers) == list(DEMO_TRAINERS) and (os.cpu_count() or 1) >= 2 else 1


def _predict_test(runner: Runner, spec: StudySpec, folders: Folders, raw: str) -> Optional[str]:
    """Step predict: imagesTs with find_best's choice (the step model's prediction steps, one after the other);
    returns the output folder (None without imagesTs)."""
    dataset = spec.datasets[0]
    test_images = os.path.join(raw, "imagesTs")
    test_output = os.path.join(folders.results, dataset, "nnunet_attention_demo_test_predictions")
    has_test = os.path.isdir(test_images) and bool(os.listdir(test_images))
    predictions = steps.best_prediction_steps(dataset, folders, test_images, test_output, spec.device,
                                              spec.folds) if has_test else []
    title = "predict imagesTs with the chosen model or ensemble"
    if not has_test:
        runner.skip(title, f"no test images in {test_images}")
        return None
    done = predictions[0].done
    runner.step(title, predictions)
    if not done:
        steps.mark_predicted(dataset, folders, test_output)
    return test_output
