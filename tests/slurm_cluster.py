"""A real single-node SLURM cluster on localhost for the tests: Debian's slurm-wlm and munge, started as root with a
minimal slurm.conf in a temporary folder (no cgroups, no accounting), stopped afterwards."""
import os
import shutil
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")


def missing_binaries() -> list:
    return [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _real_memory_mb() -> int:
    out = subprocess.run([_binary("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    return int(out.split("RealMemory=")[1].split()[0])


def start(folder: Path) -> dict:
    """Starts munged (if not running), slurmctld and slurmd; returns the environment clients need (SLURM_CONF)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(os.urandom(1024))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", _binary("munged"), "--force"], check=True)
        (folder / "munged.started").write_text("")  # stop() ends it: it was not running before
    for sub in ("state", "spool"):
        (folder / sub).mkdir(exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=nnunetattention", "SlurmctldHost=localhost", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "MpiDefault=none", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
        "ReturnToService=2", "SchedulerType=sched/backfill", "SlurmctldTimeout=30", "SlurmdTimeout=30",
        f"StateSaveLocation={folder / 'state'}", f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}", f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}", f"SlurmdLogFile={folder / 'slurmd.log'}",
        f"NodeName=localhost CPUs={os.cpu_count()} RealMemory={_real_memory_mb()} State=UNKNOWN",
        "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP", ""]))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    subprocess.run([_binary("slurmctld"), "-f", str(conf)], check=True, env=env)
    subprocess.run([_binary("slurmd"), "-f", str(conf), "-N", "localhost"], check=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env).stdout.strip()
        if out in ("idle", "mix", "alloc"):
            return {"SLURM_CONF": str(conf)}
        time.sleep(0.5)
    logs = "\n".join((folder / f).read_text()[-2000:] for f in ("slurmctld.log", "slurmd.log")
                     if (folder / f).exists())
    stop(folder)
    raise RuntimeError(f"the local SLURM node did not come up within 60 s:\n{logs}")


def stop(folder: Path):
    """Stops slurmd, slurmctld and munged if start() started it."""
    pid_files = [folder / f"{name}.pid" for name in ("slurmd", "slurmctld")]
    if (folder / "munged.started").exists():
        pid_files.append(Path("/run/munge/munged.pid"))
    pids = []
    for pid_file in pid_files:
        if pid_file.exists():
            try:
                pids.append(int(pid_file.read_text().strip()))
                os.kill(pids[-1], 15)
            except (OSError, ValueError):
                pass
    deadline = time.time() + 15
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.2)
