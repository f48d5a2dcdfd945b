"""The datasets x configurations x folds x trainers grid of a gated-vs-ungated study, as jobs of a backend
(backends.py: this machine's processes, a SLURM cluster), resumable.

The steps and their done-ness come from steps.py (nnU-Net's files, never job states), so a re-run after a failure,
``scancel``, a lost node or Ctrl-C submits exactly what is missing: planning per dataset when its plans or
preprocessed data are missing, one ``nnUNetv2_train`` per run (with ``--c`` after an interruption, ``--val`` when only
the validation is missing), then per dataset ``nnUNetv2_find_best_configuration`` over the trainers; the caller then
compares. A step is submitted only once the steps it waits for are done (a cascade fold after the same trainer's
lowres fold has written its next-stage predictions). A state file in nnUNet_results/nnunet_attention_grid keeps the job
records, commands and log paths, for ``--status`` and so that a re-run waits for jobs that are still queued or running
instead of submitting them twice.
"""
import json
import os
import shlex
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from nnunet_attention.compare.metrics import Margins
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.files import write_text
from nnunet_attention.nnunet_api import model_folder, nnunet_folder, require_variables
from nnunet_attention.study.backends import BACKENDS, PENDING, RUNNING, ENDED, ExecutorOptions, passed_variables
from nnunet_attention.study.executor import StepExecutor
from nnunet_attention.study.steps import (NEW, RESUME, VALIDATE, StudySpec, Step, check_nothing_replaced, epoch_reached,
                                          study_steps)

GRID_FOLDER = "nnunet_attention_grid"
__all__ = ["GRID_FOLDER", "ExecutorOptions", "Grid", "run_grid", "status_table", "dry_run", "log_tail"]


class Grid(StepExecutor):
    """Submits the missing steps of a StudySpec through the options' backend (backends.py) and waits for them
    (executor.StepExecutor's loop), recording every job in the state file."""

    def __init__(self, spec: StudySpec, options: ExecutorOptions, log: Callable[[str], None] = print,
                 poll_seconds: float = 5.0):
        require_variables("nnUNet_results", why="the grid's job records")
        self.spec, self.options, self.log, self.poll_seconds = spec, options, log, poll_seconds
        self.folder = os.path.join(nnunet_folder("nnUNet_results"), GRID_FOLDER)
        self.logs = os.path.join(self.folder, "grid_logs")
        self.state_file = os.path.join(self.folder, "state.json")
        self.state = self._read_state()
        self.backend = BACKENDS[options.kind](options, self.logs)
        self._backends = {self.backend.name: self.backend}  # and those of jobs an earlier run recorded
        self._active, self._states, self._last_line = set(), {}, None  # jobs running now; their last states

    # --- the state file ---------------------------------------------------------------------------------------
    def _read_state(self) -> dict:
        if not os.path.isfile(self.state_file):
            return {"jobs": {}}
        try:
            with open(self.state_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            raise NnUNetAttentionError(f"{self.state_file} is damaged; delete it (done-ness comes from nnU-Net's "
                                       f"files, nothing is lost) and run the grid again") from None

    def _write_state(self):
        os.makedirs(self.folder, exist_ok=True)
        write_text(self.state_file, json.dumps(self.state, indent=1))

    # --- job states ---------------------------------------------------------------------------------------------
    def _backend_named(self, name: str):
        """The backend that recorded a job (a state file may hold jobs of an earlier run with another executor)."""
        if name not in self._backends:
            if name not in BACKENDS:
                raise NnUNetAttentionError(f"{self.state_file} records jobs of an executor this version does not "
                                           f"know ({name!r}); delete the file (nothing is lost) and run the grid "
                                           f"again")
            self._backends[name] = BACKENDS[name](ExecutorOptions(kind=name), self.logs)
        return self._backends[name]

    def job_states(self, keys: Sequence[str]) -> Dict[str, str]:
        """key -> PENDING / RUNNING / ENDED / "none" for the last job recorded for each step."""
        by_backend: Dict[str, Dict[str, dict]] = {}
        for key in keys:
            job = self.state["jobs"].get(key)
            if job:
                by_backend.setdefault(job["executor"], {})[key] = job
        states = {key: "none" for key in keys}
        for name, records in by_backend.items():
            states.update(self._backend_named(name).states(records))
        return states

    def submit(self, step: Step) -> str:
        busy = [self.state["jobs"][k].get("gpu") for k in self._active]
        record = self.backend.submit(step.key, step.command, passed_variables(), busy)
        self.state["jobs"][step.key] = {**record, "executor": self.backend.name,
                                        "command": " ".join(shlex.quote(c) for c in step.command),
                                        "submitted": time.time()}
        self._write_state()
        self.log(f"submitted {step.key} as job {record['job_id']}: {' '.join(step.command)}")
        return record["job_id"]

    # --- the executor (executor.StepExecutor's loop) --------------------------------------------------------------
    @property
    def max_parallel(self) -> int:
        if self.options.max_parallel > 0:
            return self.options.max_parallel
        return self.backend.default_parallel()

    def report(self, line: str):
        self.log(line)

    def already_running(self, keys: Sequence[str]) -> List[str]:
        states = self.job_states(keys)
        active = sorted(k for k, st in states.items() if st in (PENDING, RUNNING))
        for key in active:
            self.log(f"{key}: job {self.state['jobs'][key]['job_id']} of an earlier run is {states[key]}; waiting "
                     f"for it")
        self._active.update(active)
        return active

    def start(self, step: Step):
        self.submit(step)
        self._active.add(step.key)

    def ended(self, steps: Dict[str, Step]) -> Dict[str, bool]:
        self._states = self.job_states(sorted(steps))
        results = {}
        for key, st in self._states.items():
            if st == ENDED:
                self._active.discard(key)
                results[key] = steps[key].refreshed().done
                job = self.state["jobs"][key]
                self.log(f"done {key}" if results[key] else f"FAILED {key}: job {job['job_id']}; log {job['log']}")
        return results

    def progress(self, done: int, running: int, queued: int, failed: int):
        pending = sum(1 for k in self._active if self._states.get(k) == PENDING)
        line = f"grid: {done} done, {running - pending} running, {pending + queued} pending, {failed} failed"
        if line != self._last_line:
            self.log(line)
            self._last_line = line

    # --- status ------------------------------------------------------------------------------------------------
    def status_rows(self, steps: Sequence[Step]) -> List[dict]:
        states = self.job_states([s.key for s in steps])
        pending = {s.key for s in steps if not s.done}
        rows = []
        for step in steps:
            job = self.state["jobs"].get(step.key) or {}
            if step.done:
                state = "done"
            elif states[step.key] in (PENDING, RUNNING):
                state = states[step.key]
            elif job:
                state = "failed" if step.state in (NEW, VALIDATE) else "interrupted"
            else:
                state = {RESUME: "interrupted", VALIDATE: "validation missing"}.get(step.state, "not started")
            blocking = [k for k in step.after if k in pending]
            if not step.done and blocking:
                state += f" (waits for {', '.join(blocking)})"
            epoch = None
            if step.kind == "train":
                epoch = epoch_reached(model_folder(step.dataset, step.trainer, self.spec.plans, step.configuration,
                                                   step.fold))
            rows.append({"step": step.kind, "dataset": step.dataset, "configuration": step.configuration,
                         "fold": step.fold, "trainer": step.trainer, "state": state, "epoch": epoch,
                         "job": job.get("job_id"), "log": job.get("log")})
        return rows


def log_tail(path: Optional[str], lines: int = 15) -> str:
    """The last lines of a job's log (stdout, then stderr beside it), for the failure report."""
    if not path:
        return "(no log)"
    text = []
    for p in (path, path.replace("_log.out", "_log.err")):
        if os.path.isfile(p):
            text += open(p, errors="replace").read().splitlines()[-lines:]
    return "\n".join(text[-lines:]) or "(empty log)"


def run_grid(spec: StudySpec, options: ExecutorOptions, compare_processes: int, poll_seconds: float = 10.0,
             log: Callable[[str], None] = print, margins: Optional[Mapping[str, float]] = None) -> bool:
    """The whole grid in one run of the steps (plan, then train, then find_best per dataset, each once what it waits
    for is done), then compare the first trainer with each other one; returns whether every step is done (a re-run
    continues where it stands)."""
    from nnunet_attention.compare.pipeline import compare_datasets

    margins = Margins.of(margins)
    grid = Grid(spec, options, log=log, poll_seconds=poll_seconds)
    grid.backend.check_runnable(spec.device)
    steps = study_steps(spec)
    check_nothing_replaced(spec, steps)
    failed = grid.run_steps(steps)  # each step once what it waits for is done
    steps = [s.refreshed() for s in steps]
    if any(s.done for s in steps if s.kind == "train"):
        pairs = [(spec.trainers[0], t) for t in spec.trainers[1:]]
        for a, b in pairs:
            output = None if len(pairs) == 1 else os.path.join(nnunet_folder("nnUNet_results"),
                                                               f"nnunet_attention_compare_{a}_vs_{b}")
            compare_datasets(spec.datasets, spec.configurations, [a, b], spec.plans, spec.folds, output,
                             processes=compare_processes, margins=margins)
    missing = [s for s in steps if not s.done]
    for step in failed:
        job = grid.state["jobs"].get(step.key, {})
        log(f"\nFAILED {step.key} (job {job.get('job_id')}), log {job.get('log')}:\n{log_tail(job.get('log'))}")
    if missing or failed:
        log(f"\nthe grid is incomplete: {len(missing)} step(s) not done ({', '.join(s.key for s in missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}); run the same command again to continue where it stands")
        return False
    log("grid complete: every run trained and validated")
    return True


def status_table(spec: StudySpec, options: ExecutorOptions) -> str:
    """--status: one row per step (state, epoch, job, log)."""
    rows = Grid(spec, options).status_rows(study_steps(spec))
    header = ("step", "dataset", "configuration", "fold", "trainer", "state", "epoch", "job", "log")
    table = [header] + [tuple("" if r[k] is None else str(r[k]) for k in header) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in table)


def dry_run(spec: StudySpec) -> str:
    """--dry-run: what is done and what would run."""
    lines = []
    steps = study_steps(spec)
    pending = {s.key for s in steps if not s.done}
    for step in steps:
        lines.append(f"{'done' if step.done else 'todo'}  {step.key}")
        if not step.done:
            lines.append(f"      $ {' '.join(step.command)}")
            if step.replaces:
                lines.append(f"      replaces {step.replaces} (only with --retrain-other-seeds)")
            trainings_first = [k for k in step.after if k in pending and k.startswith("train/")]
            if step.kind == "train" and trainings_first:
                lines.append(f"      after {', '.join(trainings_first)}")
    return "\n".join(lines + ["(find_best runs once its dataset's trainings are done; then compare)"])
