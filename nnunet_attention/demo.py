"""Gated vs ungated on one task, end to end, through nnU-Net's own commands; re-running resumes.

synth -> nnUNetv2_convert_MSD_dataset -> nnUNetv2_plan_and_preprocess -> nnUNetv2_train (both trainers, same
splits, matched schedules) -> nnUNetv2_find_best_configuration (across both) -> predict imagesTs with the chosen
model or ensemble -> compare.
"""
import glob
import json
import os
import re
import signal
import subprocess
import time
from typing import Dict, List, Optional, Sequence, Tuple

from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention import steps
from nnunet_attention.nnunet_api import bounded_export_workers
from nnunet_attention.progress_files import RESUME, VALIDATE
from nnunet_attention.steps import Folders, GridSpec
from nnunet_attention.synth import DEFAULT_TASK_ID, write_msd_task

# what nnU-Net prints that is worth showing while a step runs; the rest goes to the step's log file
_SHOWN = re.compile(r"Epoch \d+$|train_loss|val_loss|Pseudo dice|Epoch time|Mean Validation Dice|\*Best\*|"
                    r"Error|error:|Traceback")
PLANS = "nnUNetPlans"
SYNTH_CASES, SYNTH_TEST_CASES, SYNTH_SHAPE = 20, 4, (20, 48, 48)
# The demo's settings, chosen with the study in docs/init_study.md (its figures ship in data/demo_study.json): 2d,
# all five folds (a t interval over 3 folds is 2x as wide as over 5: t 4.30/sqrt(3) against 2.78/sqrt(5)),
# nnUNetTrainerDemo's schedule (5 epochs of 50 iterations), paired trainings, two at a time on the CPU.
DEMO_CONFIGURATION, DEMO_FOLDS = "2d", (0, 1, 2, 3, 4)
DEMO_TRAINERS = ("nnUNetTrainerDemo", "nnUNetTrainerAttentionDemo")
STUDY_FILE = os.path.join(os.path.dirname(__file__), "data", "demo_study.json")
# The demo's equivalence margins at its studied settings, fixed before its fresh-clone runs (docs/demo.md): one
# fold's difference B - A varies by about 0.02 Dice from the next (4 validation cases per fold), so five folds cannot
# resolve compare's default of 0.01; 0.05 Dice / NSD and 2 mm HD95 are what this 13-minute toy comparison can speak
# to. --margin sets stricter ones.
DEMO_MARGINS = {"dice": 0.05, "nsd": 0.05, "hd95": 2.0}
# Paired trainings (pairing.py): both trainers of a fold share this study seed's randomness, so that the demo repeats
# exactly on a machine and its per-fold differences vary less (docs/init_study.md).
DEMO_SEED = 0


STUDIED = "The study at exactly these settings"


def demo_schedule() -> List[int]:
    """[epochs, iterations per epoch, validation batches per epoch] of the demo's trainers."""
    from nnunet_attention.trainers import nnUNetTrainerDemo as t

    return [t.DEMO_EPOCHS, t.DEMO_ITERATIONS, t.DEMO_VAL_ITERATIONS]


def load_study() -> dict:
    """The study at the demo's settings as shipped with the package (written by scripts/init_study.py)."""
    with open(STUDY_FILE) as f:
        return json.load(f)


def demo_note(studied_task: bool, configuration: str, trainers: Sequence[str], folds: Sequence,
              seed: Optional[int] = DEMO_SEED) -> str:
    """The report's line on run-to-run spread: what the study measured at the demo's settings (its paired arm, or
    its unpaired arm for an unpaired demo), or a warning that these settings were not studied."""
    study = load_study()
    settings = study["settings"]
    if not (studied_task and configuration == settings["configuration"] and list(trainers) == settings["trainers"]
            and [str(f) for f in folds] == [str(f) for f in settings["folds"]]
            and settings["schedule"] == demo_schedule()):
        return ("These settings were not part of the study in docs/init_study.md: how much one training differs "
                "from the next here is not known; read the verdict's fold warnings.")
    arm = "paired" if seed is not None else "unpaired"
    measured = study["arms"][arm]
    per_trainer = "; ".join(
        f"{t['trainer']}: validation mean Dice {t['mean']:.3f} ± {t['sd']:.3f} over {t['runs']} trainings, "
        f"{t['lost']} lost a class" for t in measured["trainers"])
    d, ratio = measured["difference"], study["variance_ratio"]
    return (f"{STUDIED} (docs/init_study.md, {arm} trainings as this demo ran them, {study['runs_per_fold']} runs "
            f"of each fold {', '.join(map(str, settings['folds']))}): {per_trainer}. One fold's difference B - A "
            f"ranged {d['min']:+.3f} to {d['max']:+.3f} (sd {d['sd']:.3f}; unpaired trainings: sd "
            f"{study['arms']['unpaired']['difference']['sd']:.3f}, variance ratio {ratio['ratio']:.1f}, 95% CI "
            f"{ratio['ci95'][0]:.1f} to {ratio['ci95'][1]:.1f}): a single fold's difference is not a finding; the "
            f"verdict above uses the spread between folds for that reason.")


def matched_trainers(epochs: Optional[int], device: str) -> List[str]:
    """The trainer pair: the demo's own on the CPU by default; with epochs, nnU-Net's nnUNetTrainer_Nepochs and ours
    with the same schedule (100 epochs on cuda by default)."""
    from nnunet_attention.trainers import SCHEDULES

    if epochs is None:
        if device == "cpu":
            return list(DEMO_TRAINERS)
        epochs = 100
    if epochs not in SCHEDULES:
        raise NnUNetAttentionError(f"--epochs must be one of nnU-Net's schedules {', '.join(map(str, SCHEDULES))}; "
                                   f"got {epochs}")
    return list(SCHEDULES[epochs])


def demo_environment(workdir: str) -> dict:
    """The environment the demo's nnU-Net commands run in (this process's stays as it is): nnU-Net's three folders
    the user's if set, else inside workdir; nnUNet_def_n_proc, unless set, at most the CPU count (nnU-Net's default
    of 8 export workers spends most of a small validation starting them)."""
    env = dict(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = env.get(name) or os.path.join(os.path.abspath(workdir), name)
        os.makedirs(env[name], exist_ok=True)
    env.setdefault("nnUNet_def_n_proc", bounded_export_workers())
    return env


class Runner:
    """Runs numbered steps, each an nnU-Net command with its log in workdir/logs; skips steps already done. Every
    command runs in its own process group, and whatever ends the runner (a failure, Ctrl-C, SIGTERM turned into
    SystemExit by the CLI) stops the commands still running, their augmentation workers included."""

    def __init__(self, workdir: str, total: int, env: dict):
        self.logs = os.path.join(workdir, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.total, self.number, self.env = total, 0, env
        self.epochs: Optional[int] = None  # epochs per training, for the time estimate (None: no estimate)
        self._trainings_left: Optional[Tuple[int, int]] = None  # (trainings, at once) until the estimate is out

    def _header(self, title: str) -> str:
        self.number += 1
        return f"[{self.number}/{self.total}] {title}"

    def skip(self, title: str, reason: str):
        """A step that does not run, with the reason."""
        print(f"{self._header(title)}: skipped ({reason})", flush=True)

    def step(self, title: str, done: bool, *commands: List[str]):
        """Prints the step's header; runs its commands one after the other unless done."""
        header = self._header(title)
        if done:
            print(f"{header}: done before, skipped (its results exist)", flush=True)
            return
        print(header, flush=True)
        start = time.time()
        for i, command in enumerate(commands):
            self._wait(*self._start(command, self._log_name(title, i if len(commands) > 1 else None)))
        if commands:
            print(f"    finished in {time.time() - start:.0f} s", flush=True)

    def parallel_steps(self, steps: Sequence[Tuple[str, bool, List[str]]], at_once: int):
        """Steps of one command each (title, done, command), at most at_once running; a failure or an interruption
        stops the rest. After the first epoch of the first training it prints when the trainings will end."""
        pending = []
        for title, done, command in steps:
            header = self._header(title)
            if done:
                print(f"{header}: done before, skipped (its results exist)", flush=True)
            else:
                pending.append((header, self._log_name(title), command))
        self._trainings_left = (len(pending), at_once)
        running = []
        try:
            while pending or running:
                while pending and len(running) < at_once:
                    header, log_name, command = pending.pop(0)
                    print(f"{header} (started {time.strftime('%H:%M:%S')})", flush=True)
                    running.append((header, time.time(), *self._start(command, log_name, quiet=at_once > 1)))
                if at_once == 1:  # one at a time: its progress lines are echoed as they come
                    header, started, *process = running.pop()
                    self._wait(*process)
                    print(f"{header}: finished in {time.time() - started:.0f} s", flush=True)
                    continue
                if self._trainings_left:
                    with open(running[0][4], errors="replace") as f:
                        self._estimate(f.read())
                finished = next((r for r in running if r[2].poll() is not None), None)
                if finished is None:
                    time.sleep(1)
                    continue
                running.remove(finished)
                header, started, *process = finished
                self._wait(*process)
                print(f"{header}: finished in {time.time() - started:.0f} s", flush=True)
        finally:
            for _, _, process, log, _ in running:
                _stop(process)
                log.close()

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
        end = time.strftime("%H:%M", time.localtime(time.time() + seconds))
        print(f"    estimate: the trainings end around {end} (about {seconds / 60:.0f} min from now: {trainings} "
              f"trainings of {self.epochs} epochs at {float(times[0]):.0f} s per epoch, {at_once} at a time; "
              f"find_best, prediction and compare take a few minutes more). Shorter: fewer folds (-f 0 1), a "
              f"shorter schedule (--epochs), a smaller configuration (-c 2d)", flush=True)

    def _log_name(self, title: str, index: Optional[int] = None) -> str:
        suffix = "" if index is None else chr(ord("a") + index)
        return f"{self.number:02d}{suffix}_{re.sub(r'[^A-Za-z0-9]+', '_', title)[:60]}.log"

    def _start(self, command: List[str], log_name: str, quiet: bool = False):
        """Starts command in its own process group with its output in workdir/logs/log_name; without quiet its
        progress lines are echoed as they come (two commands at once write to their logs only)."""
        log_file = os.path.join(self.logs, log_name)
        print(f"    $ {' '.join(command)}\n    log: {log_file}", flush=True)
        log = open(log_file, "w")
        process = subprocess.Popen(command, stdout=log if quiet else subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, env=self.env, start_new_session=True)
        return process, log, log_file

    def _wait(self, process: subprocess.Popen, log, log_file: str):
        try:
            with log:
                if process.stdout is not None:
                    for line in process.stdout:
                        log.write(line)
                        if _SHOWN.search(line):
                            print(f"    {line.rstrip()}", flush=True)
                            self._estimate(line)
                process.wait()
        finally:
            _stop(process)
        if process.returncode != 0:
            raise NnUNetAttentionError(f"{process.args[0]} failed (exit {process.returncode}); see {log_file}")


def _stop(process: subprocess.Popen, grace: float = 10.0):
    """Ends a command's whole process group (nnU-Net's augmentation and export workers too): SIGTERM, then SIGKILL
    after grace seconds. Nothing to do once the group has gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            process.poll()
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


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
             margins: Optional[Dict[str, float]] = None, seed: Optional[int] = DEMO_SEED) -> str:
    """Runs (or resumes) the whole comparison; returns the report folder. None: the demo's settings; margins go to
    compare (equivalence margins per metric; None: DEMO_MARGINS at the studied settings, else compare's defaults);
    seed pairs the trainings (None: unpaired, as nnUNetv2_train runs them)."""
    from nnunet_attention.compare import DatasetSource, check_margins, compare, print_summary
    from nnunet_attention.devices import resolve_device
    from nnunet_attention.files import check_output_folder

    check_output_folder(workdir, *([msd_folder] if msd_folder else []))
    check_margins(margins)
    device = resolve_device(device)
    configuration, folds = configuration or DEMO_CONFIGURATION, list(folds if folds is not None else DEMO_FOLDS)
    studied = (msd_folder is None and dataset_id is None and (synth_cases, tuple(synth_shape)) == (
        SYNTH_CASES, SYNTH_SHAPE))
    if trainers is None:
        trainers = matched_trainers(epochs, device)
    elif epochs is not None:
        raise NnUNetAttentionError("give either --trainers or --epochs, not both")
    if len(trainers) != 2:
        raise NnUNetAttentionError(f"--trainers takes two trainer names (ungated, gated); got {len(trainers)}")
    note = demo_note(studied, configuration, trainers, folds, seed)
    if margins is None and note.startswith(STUDIED):
        margins = DEMO_MARGINS
        print("Equivalence margins: " + ", ".join(f"{k} +-{v:g}" for k, v in margins.items()) +
              " (the demo's, fixed before its runs: docs/demo.md; --margin sets others)", flush=True)
    env = demo_environment(workdir)
    print("nnU-Net folders: " + ", ".join(f"{k}={env[k]}" for k in ("nnUNet_raw", "nnUNet_preprocessed",
                                                                      "nnUNet_results")), flush=True)
    print(f"Paired trainings: seed {seed} (both trainers of a fold see the same batches and start from the same "
          f"shared weights: docs/grid.md)" if seed is not None else "Unpaired trainings (nnUNetv2_train as is)",
          flush=True)
    runner = Runner(workdir, 6 + 2 * len(folds), env)
    runner.epochs = schedule_epochs(trainers[0])
    dataset_id, raw = dataset_steps(runner, workdir, msd_folder, dataset_id, synth_cases, synth_shape)
    dataset_name = os.path.basename(raw)
    folders = Folders(env["nnUNet_preprocessed"], env["nnUNet_results"])
    preprocessed = os.path.join(folders.preprocessed, dataset_name)
    results = os.path.join(folders.results, dataset_name)
    spec = demo_spec(dataset_name, configuration, folds, trainers, device, seed)
    _train(runner, spec, folders)
    test_output = _predict_test(runner, spec, folders, raw)

    report_dir = os.path.join(results, "nnunet_attention_compare")
    runner.step("compare the two trainers", False)
    report = compare([DatasetSource(dataset_name, results, preprocessed)], [configuration], trainers, PLANS, folds,
                     report_dir, num_processes=2, note=note, margins=margins)
    print_summary(report, report_dir)
    print(f"\nReport: {os.path.join(report_dir, 'report.md')}", flush=True)
    if test_output:
        print(f"Test predictions: {test_output}", flush=True)
    return report_dir


def dataset_steps(runner: Runner, workdir, msd_folder, dataset_id, synth_cases, synth_shape):
    """Steps synth and convert (each skipped when done or not needed); returns (dataset id, its nnUNet_raw folder)."""
    if dataset_id is None:
        if msd_folder is None:
            msd_folder = os.path.join(workdir, "msd", f"Task{DEFAULT_TASK_ID:03d}_AttentionSynth")
            done = os.path.isfile(os.path.join(msd_folder, "dataset.json"))
            runner.step(f"synth: a generated MSD task in {msd_folder}", done)
            if not done:  # in-process: it is ours, not an nnU-Net command
                write_msd_task(os.path.dirname(msd_folder), DEFAULT_TASK_ID, synth_cases, SYNTH_TEST_CASES,
                               shape=synth_shape, overwrite=True)  # no dataset.json: not a finished task
        else:
            runner.skip("synth", f"not needed: the given MSD task {msd_folder} is used")
        dataset_id = _task_id(msd_folder)
        runner.step("convert the MSD task", _dataset_folder(runner.env["nnUNet_raw"], dataset_id) is not None,
                    ["nnUNetv2_convert_MSD_dataset", "-i", os.path.abspath(msd_folder), "-np", "2"])
    else:
        runner.skip("synth", f"not needed: dataset {dataset_id} in nnUNet_raw is used")
        runner.skip("convert", f"not needed: dataset {dataset_id} is in nnU-Net's format already")
    raw = _dataset_folder(runner.env["nnUNet_raw"], dataset_id)
    if raw is None:
        raise NnUNetAttentionError(f"no Dataset{dataset_id:03d}_* in nnUNet_raw={runner.env['nnUNet_raw']}")
    return dataset_id, raw


def demo_spec(dataset: str, configuration: str, folds: Sequence, trainers: Sequence[str], device: str,
              seed: Optional[int] = DEMO_SEED) -> GridSpec:
    """The demo's study in the step model: one dataset and configuration, --npz (find_best ensembles), two processes
    for planning and find_best, paired trainings with seed (None: unpaired, nnUNetv2_train)."""
    return GridSpec([dataset], [configuration], list(folds), list(trainers), PLANS, device, npz=True, processes=2,
                    seed=seed)


def schedule_epochs(trainer: str) -> Optional[int]:
    """Epochs of a trainer's schedule, for the time estimate: the demo's, nnU-Net's (nnUNetTrainer: 1000) and its
    _Nepochs variants; None for other trainers (their schedule is not in their name)."""
    from nnunet_attention.trainers import SCHEDULES, nnUNetTrainerDemo

    if trainer in DEMO_TRAINERS:
        return nnUNetTrainerDemo.DEMO_EPOCHS
    return next((epochs for epochs, pair in SCHEDULES.items() if trainer in pair), None)


def plan_step(runner: Runner, spec: GridSpec, folders: Folders):
    """Step plan: nnU-Net's planning and preprocessing (skipped when its data exist)."""
    step = steps.plan_step(spec, spec.datasets[0], folders)
    runner.step("plan and preprocess", step.done, list(step.command))


def training_steps(spec: GridSpec, folders: Folders) -> List[Tuple[str, bool, List[str]]]:
    """(title, done, command) per fold and trainer: the nnUNetv2_train that brings it to done (a fold trained
    without --npz is validated again)."""
    return runner_items(steps.train_steps(spec, spec.datasets[0], folders))


def runner_items(trainings: Sequence[steps.Step]) -> List[Tuple[str, bool, List[str]]]:
    notes = {RESUME: " (resuming)", VALIDATE: " (validating)"}
    return [(f"train {s.trainer} fold {s.fold}{notes.get(s.state, '')}", s.done, list(s.command)) for s in trainings]


def trainings_at_once(trainers: Sequence[str], device: str) -> int:
    """Two on the CPU for the demo's trainers (each takes half the cores); otherwise one."""
    return 2 if device == "cpu" and list(trainers) == list(DEMO_TRAINERS) and (os.cpu_count() or 1) >= 2 else 1


def _train(runner: Runner, spec: GridSpec, folders: Folders):
    """Steps plan, train (every fold of both trainers) and find_best."""
    plan_step(runner, spec, folders)
    trainings = steps.train_steps(spec, spec.datasets[0], folders)
    runner.parallel_steps(runner_items(trainings), trainings_at_once(spec.trainers, spec.device))
    best = steps.find_best_step(spec, spec.datasets[0], folders, trainings)
    runner.step("find the best configuration across both trainers", best.done, list(best.command))


def _predict_test(runner: Runner, spec: GridSpec, folders: Folders, raw: str) -> Optional[str]:
    """Step predict: imagesTs with find_best's choice (the step model's prediction steps, one after the other);
    returns the output folder (None without imagesTs)."""
    dataset = spec.datasets[0]
    test_images = os.path.join(raw, "imagesTs")
    test_output = os.path.join(folders.results, dataset, "nnunet_attention_demo_test_predictions")
    has_test = os.path.isdir(test_images) and bool(os.listdir(test_images))
    predictions = steps.best_prediction_steps(dataset, folders, test_images, test_output, spec.device,
                                              spec.folds) if has_test else []
    done = not predictions or predictions[0].done
    runner.step("predict imagesTs with the chosen model or ensemble" + ("" if has_test else ": no imagesTs"), done,
                *[list(s.command) for s in predictions])
    if not done:
        steps.mark_predicted(dataset, folders, test_output)
    return test_output if has_test else None
