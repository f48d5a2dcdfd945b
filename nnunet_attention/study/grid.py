"""The datasets x configurations x folds x trainers grid of a gated-vs-ungated study, as jobs submitted with submitit
(its local executor, or SLURM through sbatch), resumable.

The steps and their done-ness come from steps.py (nnU-Net's files, never job states), so a re-run after a failure,
``scancel``, a lost node or Ctrl-C submits exactly what is missing: planning per dataset when its plans or
preprocessed data are missing, one ``nnUNetv2_train`` per run (with ``--c`` after an interruption, ``--val`` when only
the validation is missing), then per dataset ``nnUNetv2_find_best_configuration`` over the trainers; the caller then
compares. A step is submitted only once the steps it waits for are done (a cascade fold after the same trainer's
lowres fold has written its next-stage predictions). A state file in nnUNet_results/nnunet_attention_grid keeps job
ids, commands and log paths, for ``--status`` and so that a re-run waits for jobs that are still queued or running
instead of submitting them twice.
"""
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.files import write_text
from nnunet_attention.nnunet_api import model_folder
from nnunet_attention.study.executor import StepExecutor
from nnunet_attention.study.steps import NEW, RESUME, VALIDATE, GridSpec, Step, epoch_reached, study_steps

GRID_FOLDER = "nnunet_attention_grid"
PASSED_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer", "nnUNet_def_n_proc",
                    "nnUNet_n_proc_DA", "nnUNet_compile", "nnUNet_USE_TRITON")
LOCAL_TIMEOUT_MIN = 60 * 24 * 30  # submitit's local executor kills jobs after timeout_min (default 2 minutes)


def run_job(command: List[str], variables: Dict[str, str]) -> None:
    """What a grid job runs on its node: the command, with the submitting user's nnU-Net variables on top of the
    node's environment; its output goes to the job's log. A non-zero exit fails the job."""
    print(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(not set)')}", flush=True)
    print("$ " + " ".join(shlex.quote(c) for c in command), flush=True)
    subprocess.run(command, env={**os.environ, **variables}, check=True)


@dataclass
class ExecutorOptions:
    kind: str = "local"  # local | slurm
    max_parallel: int = 0  # 0: local -> one per visible GPU (or 1), slurm -> no limit
    partition: Optional[str] = None
    gpus_per_job: Optional[int] = None
    cpus_per_job: Optional[int] = None
    mem: Optional[str] = None
    time: Optional[str] = None
    setup: Sequence[str] = ()

    def __post_init__(self):
        if self.max_parallel < 0:
            raise NnUNetAttentionError(f"--max-parallel must be 0 (automatic) or more, got {self.max_parallel}")
        slurm_only = (self.partition, self.gpus_per_job, self.cpus_per_job, self.mem, self.time, self.setup)
        if self.kind == "local" and any(v for v in slurm_only):
            raise NnUNetAttentionError("--slurm-* options need --executor slurm")
        for name in ("gpus_per_job", "cpus_per_job"):
            if (getattr(self, name) or 0) < 0:
                raise NnUNetAttentionError(f"--slurm-{name.replace('_', '-')} must be 0 or more")

    def check_runnable(self, device: str):
        """What submitting needs here: sbatch and squeue for SLURM; a CUDA device for local CUDA jobs."""
        from shutil import which

        if self.kind == "slurm" and (which("sbatch") is None or which("squeue") is None):
            raise NnUNetAttentionError("--executor slurm needs SLURM's sbatch and squeue on PATH; run the grid on a "
                                       "login node, or use --executor local")
        if self.kind == "local" and device == "cuda":
            from nnunet_attention.devices import resolve_device

            resolve_device("cuda")


class Grid(StepExecutor):
    """Submits the missing steps of a GridSpec through submitit and waits for them (executor.StepExecutor's loop),
    recording every job in the state file."""

    def __init__(self, spec: GridSpec, options: ExecutorOptions, log: Callable[[str], None] = print,
                 poll_seconds: float = 5.0):
        from nnunetv2.paths import nnUNet_results

        self.spec, self.options, self.log, self.poll_seconds = spec, options, log, poll_seconds
        self.folder = os.path.join(str(nnUNet_results), GRID_FOLDER)
        self.logs = os.path.join(self.folder, "grid_logs")
        self.state_file = os.path.join(self.folder, "state.json")
        self.state = self._read_state()
        self._gpus = _visible_gpus()
        self._local_jobs = {}  # key -> submitit job submitted by this process (polled through submitit)
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

    # --- job states --------------------------------------------------------------------------------------------
    def job_states(self, keys: Sequence[str]) -> Dict[str, str]:
        """key -> "pending" / "running" / "ended" / "none" for the last job recorded for each step."""
        jobs = {k: self.state["jobs"].get(k) for k in keys}
        slurm_ids = [j["job_id"] for j in jobs.values() if j and j["executor"] == "slurm"]
        queued = _squeue(slurm_ids) if slurm_ids else {}
        states = {}
        for key, job in jobs.items():
            if not job:
                states[key] = "none"
            elif job["executor"] == "slurm":
                states[key] = queued.get(job["job_id"], "ended")
            elif key in self._local_jobs:
                states[key] = "ended" if self._local_jobs[key].done() else "running"
            else:
                states[key] = "running" if _pid_alive(int(job["job_id"])) else "ended"
        return states

    # --- submission --------------------------------------------------------------------------------------------
    def _executor(self, step: Step, gpu: Optional[int]):
        import submitit

        variables = {k: os.environ[k] for k in PASSED_VARIABLES if k in os.environ}
        if self.options.kind == "slurm":
            executor = submitit.SlurmExecutor(folder=os.path.join(self.logs, "%j"), python=sys.executable)
            parameters = {"job_name": f"nnunet_attention:{step.key}", "setup": list(self.options.setup),
                          "partition": self.options.partition, "gpus_per_node": self.options.gpus_per_job,
                          "cpus_per_task": self.options.cpus_per_job, "mem": self.options.mem,
                          "time": self.options.time}
            executor.update_parameters(**{k: v for k, v in parameters.items() if v not in (None, [])})
        else:
            executor = submitit.LocalExecutor(folder=os.path.join(self.logs, "%j"))
            executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN,
                                       **({"gpus_per_node": 1, "visible_gpus": [gpu]} if gpu is not None else {}))
        return executor, variables

    def submit(self, step: Step, gpu: Optional[int] = None) -> str:
        executor, variables = self._executor(step, gpu)
        job = executor.submit(run_job, list(step.command), variables)
        if self.options.kind == "local":
            self._local_jobs[step.key] = job
        self.state["jobs"][step.key] = {"job_id": str(job.job_id), "executor": self.options.kind,
                                        "command": " ".join(shlex.quote(c) for c in step.command),
                                        "log": str(job.paths.stdout), "submitted": time.time(), "gpu": gpu}
        self._write_state()
        self.log(f"submitted {step.key} as job {job.job_id}: {' '.join(step.command)}")
        return str(job.job_id)

    # --- the executor (executor.StepExecutor's loop) --------------------------------------------------------------
    @property
    def max_parallel(self) -> int:
        if self.options.max_parallel > 0:
            return self.options.max_parallel
        return 10 ** 6 if self.options.kind == "slurm" else max(1, len(self._gpus))

    def report(self, line: str):
        self.log(line)

    def already_running(self, keys: Sequence[str]) -> List[str]:
        states = self.job_states(keys)
        active = sorted(k for k, st in states.items() if st in ("pending", "running"))
        for key in active:
            self.log(f"{key}: job {self.state['jobs'][key]['job_id']} of an earlier run is {states[key]}; waiting "
                     f"for it")
        self._active.update(active)
        return active

    def start(self, step: Step):
        busy = {self.state["jobs"][k].get("gpu") for k in self._active}
        free_gpus = [g for g in self._gpus if g not in busy]
        self.submit(step, free_gpus[0] if (self.options.kind == "local" and free_gpus) else None)
        self._active.add(step.key)

    def ended(self, steps: Dict[str, Step]) -> Dict[str, bool]:
        self._states = self.job_states(sorted(steps))
        results = {}
        for key, st in self._states.items():
            if st == "ended":
                self._active.discard(key)
                results[key] = steps[key].refreshed().done
                job = self.state["jobs"][key]
                self.log(f"done {key}" if results[key] else f"FAILED {key}: job {job['job_id']}; log {job['log']}")
        return results

    def progress(self, done: int, running: int, queued: int, failed: int):
        pending = sum(1 for k in self._active if self._states.get(k) == "pending")
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
            elif states[step.key] in ("pending", "running"):
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


def _squeue(job_ids: Sequence[str]) -> Dict[str, str]:
    """job id -> "pending" / "running" for the given jobs SLURM still has queued or running."""
    try:
        out = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NnUNetAttentionError(f"squeue failed ({e}); is SLURM reachable from here?") from None
    states = {}
    for line in out.stdout.splitlines():
        job_id, state = line.split()
        states[job_id] = "pending" if state in ("PENDING", "CONFIGURING") else "running"
    return states


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie has ended
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return True


def _visible_gpus() -> List[int]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(g) for g in visible.split(",") if g.strip().isdigit()]
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except Exception:
        return []


def log_tail(path: Optional[str], lines: int = 15) -> str:
    """The last lines of a job's log (stdout, then stderr beside it), for the failure report."""
    if not path:
        return "(no log)"
    text = []
    for p in (path, path.replace("_log.out", "_log.err")):
        if os.path.isfile(p):
            text += open(p, errors="replace").read().splitlines()[-lines:]
    return "\n".join(text[-lines:]) or "(empty log)"


def run_grid(spec: GridSpec, options: ExecutorOptions, compare_processes: int, poll_seconds: float = 10.0,
             log: Callable[[str], None] = print, margins: Optional[Dict[str, float]] = None) -> bool:
    """The whole grid in one run of the steps (plan, then train, then find_best per dataset, each once what it waits
    for is done), then compare the first trainer with each other one; returns whether every step is done (a re-run
    continues where it stands)."""
    from nnunet_attention.compare.pipeline import compare_datasets

    options.check_runnable(spec.device)
    grid = Grid(spec, options, log=log, poll_seconds=poll_seconds)
    failed = grid.run_steps(study_steps(spec))  # each step once what it waits for is done
    steps = study_steps(spec)
    if any(s.done for s in steps if s.kind == "train"):
        from nnunetv2.paths import nnUNet_results

        pairs = [(spec.trainers[0], t) for t in spec.trainers[1:]]
        for a, b in pairs:
            output = None if len(pairs) == 1 else os.path.join(str(nnUNet_results),
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


def status_table(spec: GridSpec, options: ExecutorOptions) -> str:
    """--status: one row per step (state, epoch, job, log)."""
    rows = Grid(spec, options).status_rows(study_steps(spec))
    header = ("step", "dataset", "configuration", "fold", "trainer", "state", "epoch", "job", "log")
    table = [header] + [tuple("" if r[k] is None else str(r[k]) for k in header) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in table)


def dry_run(spec: GridSpec) -> str:
    """--dry-run: what is done and what would run."""
    lines = []
    steps = study_steps(spec)
    pending = {s.key for s in steps if not s.done}
    for step in steps:
        lines.append(f"{'done' if step.done else 'todo'}  {step.key}")
        if not step.done:
            lines.append(f"      $ {' '.join(step.command)}")
            trainings_first = [k for k in step.after if k in pending and k.startswith("train/")]
            if step.kind == "train" and trainings_first:
                lines.append(f"      after {', '.join(trainings_first)}")
    return "\n".join(lines + ["(find_best runs once its dataset's trainings are done; then compare)"])
