"""Where grid jobs run: one interface (``JobBackend``), with this machine's processes (``LocalBackend``) and SLURM
(``SlurmBackend``) as its implementations, both through submitit. The grid's loop (grid.Grid) only submits, asks
for states and reads the records a backend returns; a new executor (a Ray or Dask cluster, a cloud batch service)
is one more class registered in ``BACKENDS``, with its own command-line options in ``flags`` (the CLI registers
them; ExecutorOptions carries the given ones to it as ``settings``).

A job record (kept in the grid's state file) is a plain dict: job_id, log, gpu, and whatever the backend needs to
tell later, from another process or after a reboot, whether the job still runs.
"""
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from nnunet_attention.errors import NnUNetAttentionError

PASSED_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer", "nnUNet_def_n_proc",
                    "nnUNet_n_proc_DA", "nnUNet_compile", "nnUNet_USE_TRITON")
LOCAL_TIMEOUT_MIN = 60 * 24 * 30  # submitit's local executor kills jobs after timeout_min (default 2 minutes)
PENDING, RUNNING, ENDED = "pending", "running", "ended"


def run_job(command: List[str], variables: Dict[str, str]) -> None:
    """What a grid job runs on its node: the command, with the submitting user's nnU-Net variables on top of the
    node's environment; its output goes to the job's log. A non-zero exit fails the job."""
    print(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(not set)')}", flush=True)
    print("$ " + " ".join(shlex.quote(c) for c in command), flush=True)
    subprocess.run(command, env={**os.environ, **variables}, check=True)


def passed_variables() -> Dict[str, str]:
    """The nnU-Net variables of the submitting shell, which every job gets."""
    return {k: os.environ[k] for k in PASSED_VARIABLES if k in os.environ}


@dataclass
class ExecutorOptions:
    """The grid's --executor and --max-parallel, and the backend's own options (``settings``: those of the backend's
    ``flags`` that were given, by their dest names)."""

    kind: str = "local"  # a key of BACKENDS
    max_parallel: int = 0  # 0: the backend's own (local: one per visible GPU or 1; SLURM: no limit)
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in BACKENDS:
            raise NnUNetAttentionError(f"--executor must be one of {', '.join(BACKENDS)}, got {self.kind!r}")
        if self.max_parallel < 0:
            raise NnUNetAttentionError(f"--max-parallel must be 0 (automatic) or more, got {self.max_parallel}")
        for backend in BACKENDS.values():
            given = [flag.option for flag in backend.flags if flag.dest in self.settings]
            if given and backend is not BACKENDS[self.kind]:
                raise NnUNetAttentionError(f"{', '.join(given)}: only with --executor {backend.name}")
        BACKENDS[self.kind].check_settings(self.settings)

    @classmethod
    def from_arguments(cls, args) -> "ExecutorOptions":
        """From the CLI's parsed arguments: every backend's flags that were given (argparse default None)."""
        settings = {flag.dest: getattr(args, flag.dest) for backend in BACKENDS.values() for flag in backend.flags
                    if getattr(args, flag.dest, None) is not None}
        return cls(args.executor, args.max_parallel, settings)


@dataclass(frozen=True)
class BackendFlag:
    """One command-line option a backend owns: ``option`` (e.g. --slurm-mem) and argparse's keywords."""

    option: str
    keywords: Mapping[str, Any]

    @property
    def dest(self) -> str:
        return self.option.lstrip("-").replace("-", "_")


def add_backend_flags(parser) -> None:
    """Registers every backend's own options on the grid's parser, one argument group per backend."""
    for backend in BACKENDS.values():
        if backend.flags:
            group = parser.add_argument_group(f"--executor {backend.name}")
            for flag in backend.flags:
                group.add_argument(flag.option, **flag.keywords)


class JobBackend:
    """How grid jobs are started and watched. ``logs`` is the folder for the jobs' logs (the backend may make
    sub-folders)."""

    name: str = ""
    flags: Tuple[BackendFlag, ...] = ()  # its own command-line options, registered by add_backend_flags

    def __init__(self, options: ExecutorOptions, logs: str):
        self.options, self.logs = options, logs

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> None:
        """A one-line error for a bad value of one of this backend's own options."""

    def check_runnable(self, device: str):
        """A one-line error when jobs cannot start from here (a missing command, no GPU for CUDA jobs)."""

    def default_parallel(self) -> int:
        """How many jobs at once when --max-parallel is 0."""
        raise NotImplementedError

    def submit(self, key: str, command: Sequence[str], variables: Dict[str, str], busy_gpus: Sequence[int]) -> dict:
        """Starts the job; returns its record (job_id, log, gpu and what states() needs later)."""
        raise NotImplementedError

    def states(self, records: Dict[str, dict]) -> Dict[str, str]:
        """key -> PENDING / RUNNING / ENDED for jobs this backend recorded (in this process or an earlier one)."""
        raise NotImplementedError


class LocalBackend(JobBackend):
    """Jobs as processes on this machine (submitit's LocalExecutor), one GPU each while GPUs are free. A job is
    known across processes and reboots by its PID together with the process's start time and the boot it ran in,
    so a PID the system has since given to another process does not count as the job."""

    name = "local"

    def __init__(self, options: ExecutorOptions, logs: str):
        super().__init__(options, logs)
        self.gpus = visible_gpus()
        self._jobs = {}  # key -> submitit job started by this process

    def check_runnable(self, device: str):
        if device == "cuda":
            from nnunet_attention.devices import resolve_device

            resolve_device("cuda")

    def default_parallel(self) -> int:
        return max(1, len(self.gpus))

    def submit(self, key, command, variables, busy_gpus):
        import submitit

        free = [g for g in self.gpus if g not in set(busy_gpus)]
        gpu = free[0] if free else None
        executor = submitit.LocalExecutor(folder=os.path.join(self.logs, "%j"))
        executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN,
                                   **({"gpus_per_node": 1, "visible_gpus": [gpu]} if gpu is not None else {}))
        job = executor.submit(run_job, list(command), variables)
        self._jobs[key] = job
        pid = int(job.job_id)
        return {"job_id": str(job.job_id), "log": str(job.paths.stdout), "gpu": gpu,
                "process_start": process_start(pid), "boot_id": boot_id()}

    def states(self, records):
        return {key: (ENDED if self._jobs[key].done() else RUNNING) if key in self._jobs
                else (RUNNING if same_process_alive(record) else ENDED) for key, record in records.items()}


class SlurmBackend(JobBackend):
    """Jobs submitted with sbatch (submitit's SlurmExecutor) with the --slurm-* resources; states from squeue."""

    name = "slurm"
    flags = (BackendFlag("--slurm-partition", {"help": "sbatch --partition"}),
             BackendFlag("--slurm-gpus-per-job", {"type": int, "help": "GPUs per job (sbatch --gpus-per-node)"}),
             BackendFlag("--slurm-cpus-per-job", {"type": int, "help": "CPUs per job (sbatch --cpus-per-task)"}),
             BackendFlag("--slurm-mem", {"help": "memory per job, e.g. 32G (sbatch --mem)"}),
             BackendFlag("--slurm-time", {"help": "time limit per job, minutes or D-HH:MM:SS (sbatch --time)"}),
             BackendFlag("--slurm-setup", {"action": "append", "metavar": "COMMAND",
                                           "help": "a shell line run before each job, e.g. \"module load cuda\" "
                                                   "(repeatable)"}))
    # our option -> submitit's SlurmExecutor parameter
    PARAMETERS = {"slurm_partition": "partition", "slurm_gpus_per_job": "gpus_per_node",
                  "slurm_cpus_per_job": "cpus_per_task", "slurm_mem": "mem", "slurm_time": "time",
                  "slurm_setup": "setup"}

    @classmethod
    def check_settings(cls, settings):
        for name in ("slurm_gpus_per_job", "slurm_cpus_per_job"):
            if settings.get(name, 0) < 0:
                raise NnUNetAttentionError(f"--{name.replace('_', '-')} must be 0 or more")

    def check_runnable(self, device: str):
        from shutil import which

        if which("sbatch") is None or which("squeue") is None:
            raise NnUNetAttentionError("--executor slurm needs SLURM's sbatch and squeue on PATH; run the grid on a "
                                       "login node, or use --executor local")

    def default_parallel(self) -> int:
        return 10 ** 6

    def submit(self, key, command, variables, busy_gpus):
        import submitit

        executor = submitit.SlurmExecutor(folder=os.path.join(self.logs, "%j"), python=sys.executable)
        executor.update_parameters(job_name=f"nnunet_attention:{key}",
                                   **{self.PARAMETERS[k]: v for k, v in self.options.settings.items()})
        job = executor.submit(run_job, list(command), variables)
        return {"job_id": str(job.job_id), "log": str(job.paths.stdout), "gpu": None}

    def states(self, records):
        queued = squeue([r["job_id"] for r in records.values()]) if records else {}
        return {key: queued.get(record["job_id"], ENDED) for key, record in records.items()}


BACKENDS = {backend.name: backend for backend in (LocalBackend, SlurmBackend)}


def squeue(job_ids: Sequence[str]) -> Dict[str, str]:
    """job id -> PENDING / RUNNING for the given jobs SLURM still has queued or running."""
    try:
        out = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NnUNetAttentionError(f"squeue failed ({e}); is SLURM reachable from here?") from None
    states = {}
    for line in out.stdout.splitlines():
        job_id, state = line.split()
        states[job_id] = PENDING if state in ("PENDING", "CONFIGURING") else RUNNING
    return states


def boot_id() -> Optional[str]:
    """This boot's id (Linux); None where the system has none."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _stat_fields(pid: int) -> Optional[List[str]]:
    """/proc/PID/stat's fields after the command name (state first); None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> Optional[str]:
    """When the process started, in clock ticks since boot (/proc/PID/stat field 22); None if it has gone."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def same_process_alive(record: dict) -> bool:
    """Whether the process a local job record names still runs: same boot, same PID, same start time, not a
    zombie."""
    if record.get("boot_id") != boot_id() or record.get("process_start") is None:
        return False
    fields = _stat_fields(int(record["job_id"]))
    return bool(fields) and fields[19] == record["process_start"] and fields[0] != "Z"


def visible_gpus() -> List[int]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(g) for g in visible.split(",") if g.strip().isdigit()]
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except Exception:
        return []
