"""One way to run the study's steps (steps.py): ``run_steps(steps)`` starts each step not done once the steps it
waits for (``Step.after``) have ended well, at most ``max_parallel`` at a time, reports each step's state as it
changes, and returns the steps that did not end well (failed, or blocked behind a failure).

Two executors share that loop (``StepExecutor``): ``LocalExecutor`` runs the commands as processes on this machine
(the demo, scripts/init_study.py, scripts/gpu_check.py, the tests), and ``grid.Grid`` submits them as submitit jobs
(its local executor or SLURM) with a state file, so that a re-run waits for the jobs of an earlier one.
"""
import os
import signal
import subprocess
import time
from typing import Callable, Dict, List, Optional, Sequence

from nnunet_attention.devices import threads_per_job
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.study.steps import Step


class StepTimeout(NnUNetAttentionError):
    """A LocalExecutor's deadline passed while steps were running (they were stopped)."""


class StepExecutor:
    """The scheduling loop; subclasses say how a step starts (``start``), which started steps have ended and whether
    well (``ended``), and what happens to those still running when the loop is left (``leave``)."""

    max_parallel: int = 1
    poll_seconds: float = 1.0

    def report(self, line: str):
        """Progress lines (a step submitted, done, failed, blocked)."""

    def already_running(self, keys: Sequence[str]) -> List[str]:
        """Keys of steps an earlier run started and that still run (they are waited for, not started again)."""
        return []

    def start(self, step: Step):
        raise NotImplementedError

    def ended(self, steps: Dict[str, Step]) -> Dict[str, bool]:
        """key -> whether it ended well, for the running steps that have ended."""
        raise NotImplementedError

    def leave(self, steps: Dict[str, Step]):
        """Called with the steps still running when run_steps is left (by an exception)."""

    def progress(self, done: int, running: int, queued: int, failed: int):
        """Called once per turn of the loop with the counts."""

    def run_steps(self, steps: Sequence[Step]) -> List[Step]:
        todo = [s for s in steps if not s.done]
        waiting = {s.key: s for s in todo}
        active = {k: waiting[k] for k in self.already_running(list(waiting))}
        queue = [s for s in todo if s.key not in active]
        failed: List[Step] = []
        finished = set()
        try:
            while queue or active:
                failed_keys = {f.key for f in failed}
                for step in [s for s in queue if any(k in failed_keys for k in s.after)]:
                    queue.remove(step)
                    failed.append(step)
                    self.report(f"BLOCKED {step.key}: it waits for "
                                f"{', '.join(k for k in step.after if k in failed_keys)}, which failed")
                ready = [s for s in queue if all(k not in waiting or k in finished for k in s.after)]
                while ready and len(active) < self.max_parallel:
                    step = ready.pop(0)
                    queue.remove(step)
                    self.start(step)
                    active[step.key] = step
                for key, ok in self.ended(active).items():
                    step = active.pop(key)
                    if ok:
                        finished.add(key)
                    else:
                        failed.append(step)
                self.progress(len(finished), len(active), len(queue), len(failed))
                if active:
                    time.sleep(self.poll_seconds)
        finally:
            if active:
                self.leave(active)
        return failed


class LocalExecutor(StepExecutor):
    """Runs steps' commands as processes on this machine, each in its own process group with its output in a log
    file; whatever leaves run_steps early (Ctrl-C, SIGTERM turned into SystemExit, a deadline) stops the commands
    still running, their worker processes included. A step ends well when its command exits 0.

    Args:
        env: the commands' environment; without OMP_NUM_THREADS, each command gets its share of the cores.
        logs: the folder of the log files.
        max_parallel: how many commands run at the same time.
        log_name: a step's log file name (default: its key with / as _).
        on_start: called with (step, log file) when a step starts.
        on_end: called with (step, seconds, exit code) when a step's command has ended.
        on_line: called with (step, line) for each line a running command writes (read from its log).
        deadline: a time.time() by which every command must have ended (StepTimeout after it); None: no limit.
    """

    poll_seconds = 0.5

    def __init__(self, env: dict, logs: str, max_parallel: int = 1, log_name: Optional[Callable[[Step], str]] = None,
                 on_start: Optional[Callable] = None, on_end: Optional[Callable] = None,
                 on_line: Optional[Callable] = None, deadline: Optional[float] = None):
        os.makedirs(logs, exist_ok=True)
        env = env if "OMP_NUM_THREADS" in env else {**env, "OMP_NUM_THREADS": str(threads_per_job(max_parallel))}
        self.env, self.logs, self.max_parallel, self.deadline = env, logs, max_parallel, deadline
        self.log_name = log_name or (lambda step: step.key.replace("/", "_") + ".log")
        self.on_start, self.on_end, self.on_line = on_start, on_end, on_line
        self._running = {}  # key -> (process, log file, start time, read offset)

    def log_file(self, step: Step) -> str:
        return os.path.join(self.logs, self.log_name(step))

    def start(self, step: Step):
        log_file = self.log_file(step)
        if self.on_start:
            self.on_start(step, log_file)
        with open(log_file, "w") as log:
            process = subprocess.Popen(list(map(str, step.command)), stdout=log, stderr=subprocess.STDOUT,
                                       env=self.env, start_new_session=True)
        self._running[step.key] = [process, log_file, time.time(), 0]

    def _read_lines(self, step: Step, final: bool = False):
        """Hands the complete lines the command wrote since the last call to on_line (at its end, all of them)."""
        running = self._running[step.key]
        with open(running[1], "rb") as f:
            f.seek(running[3])
            new = f.read()
        complete = new if final else new[:new.rfind(b"\n") + 1]
        running[3] += len(complete)
        if self.on_line:
            for line in complete.decode(errors="replace").splitlines():
                self.on_line(step, line)

    def ended(self, steps: Dict[str, Step]) -> Dict[str, bool]:
        if self.deadline is not None and time.time() > self.deadline:
            raise StepTimeout(f"the time limit passed while {', '.join(steps)} ran; see {self.logs}")
        results = {}
        for key, step in steps.items():
            process, log_file, started, _ = self._running[key]
            code = process.poll()
            self._read_lines(step, final=code is not None)
            if code is not None:
                _stop(process)  # workers it left behind
                del self._running[key]
                if self.on_end:
                    self.on_end(step, time.time() - started, code)
                results[key] = code == 0
        return results

    def leave(self, steps: Dict[str, Step]):
        for key in steps:
            _stop(self._running.pop(key)[0])


def run_or_raise(executor: LocalExecutor, steps: Sequence[Step]):
    """run_steps, and a one-line error naming the first step that did not end well and its log."""
    failed = executor.run_steps(steps)
    if failed:
        raise NnUNetAttentionError(f"{failed[0].command[0]} failed ({failed[0].key}); see "
                                   f"{executor.log_file(failed[0])}")


def _stop(process: subprocess.Popen, grace: float = 10.0):
    """Ends a command's whole process group (nnU-Net's augmentation and export workers too): SIGTERM, then SIGKILL
    after grace seconds. Nothing to do once the group has gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            process.poll()
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            process.poll()
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
