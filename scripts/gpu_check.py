"""GPU truth in one command: gated vs ungated on the card it finds, through our bench and nnU-Net's own commands.

    python scripts/gpu_check.py -o gpu_results              # on a GPU machine: at most 8 minutes (the parts' limits)
    python scripts/gpu_check.py -o gpu_results --parts pairing grid   # a subset, e.g. as a second command
    python scripts/gpu_check.py -o gpu_results --dry-run    # the parts, their limits and what they run; runs nothing
    python scripts/gpu_check.py -o tmp --device cpu --quick # the same steps at tiny sizes (the CI test)

Parts in order of value, each with its own time limit (--limits PART=SECONDS); results are written after every step,
so a part that fails or times out keeps what the earlier steps measured, and the message names the step:
  bench    `nnunet-attention bench` on the built-in hippocampus and pancreas 3d_fullres plans, fp16 (nnU-Net's AMP):
           compiled first (nnU-Net's default path on CUDA: train step, CUDA peak memory, kernels per forward and
           backward, graph breaks), then eager (the same plus sliding-window inference, which nnU-Net runs eager).
  train    the generated task, 3d_fullres: nnUNetv2_train of both trainers (a short fixed schedule, nnU-Net's
           defaults on CUDA: compile and AMP on); epoch-time ratio from nnU-Net's logging over the epochs after the
           first (which holds torch.compile's compilation); then nnUNetv2_predict and `nnunet-attention maps` of the
           gated model on the test cases (maps' time over predict's).
  pairing  paired trainings (`nnunet-attention train ... --seed 0`: cuDNN deterministic, no benchmark; nnU-Net's
           compile and AMP as they are): the gated trainer twice; whether the two repeat, how far apart they end,
           and their epoch time against the train part's unpaired gated training (pairing's cost).
  grid     `nnunet-attention grid --executor local` on that task: the folds trained without --npz are validated again
           by grid jobs; each job's log shows the CUDA_VISIBLE_DEVICES it ran with.
Writes OUT/gpu_check.json and OUT/gpu_check.md (its "GPU table" is what the README's GPU section shows).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

from nnunet_attention.nnunet_api import bounded_export_workers, model_identifier
from nnunet_attention.study import steps
from nnunet_attention.study.executor import LocalExecutor, StepTimeout

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "nnunet_attention.cli"]
# nnU-Net's trainer and ours on a schedule set by environment variables (check_trainers/, via nnUNet_extTrainer)
TRAINERS = ("nnUNetTrainerScheduled", "nnUNetTrainerAttentionScheduled")
PARTS = ("compiled", "eager", "train", "pairing", "grid")  # in order of value
# Two commands of a lease (15 min of device time, its ~30 s start included; 10 min a command), each within 8 minutes
# and each on its own (the second's parts share one generated task and its trainings): the first is the default,
# the second `--parts train pairing grid`; `--parts all` runs both in one.
COMMANDS = (("compiled", "eager"), ("train", "pairing", "grid"))
# seconds per part on CUDA, from the H200 runs (docs/gpu/): a compiled fp16 bench ~100 s for hippocampus and over
# 85 s for pancreas; an eager one 45-60 s per plan with its activation-memory processes (not repeated here: exact
# on the CPU); synth + convert + plan ~85 s; a training 60-70 s (first epoch 42-65 s of compilation, then ~2 s per
# 100 iterations) and 25 s of final validation (left to grid's --val here); two grid validations did not end in 60 s.
# On the CPU: what 2 cores need at --quick.
DEFAULT_LIMITS = {"cuda": {"compiled": 230.0, "train": 250.0, "eager": 70.0, "pairing": 130.0, "grid": 90.0},
                  "cpu": {"compiled": 60.0, "train": 900.0, "eager": 600.0, "pairing": 600.0, "grid": 600.0}}
TASK_ID = 990
DATASET = "Dataset990_AttentionSynth"
PLANS = "nnUNetPlans"
PLANS_3D = ("hippocampus_3d_fullres", "pancreas_3d_fullres")
TASK_PLAN = "task_3d_fullres"  # the generated task's nnUNetPlans 3d_fullres: seconds on a CPU, not the MSD shapes


class PartTimeout(Exception):
    pass


class PartSkipped(Exception):
    pass


def bench_runs(quick: bool, device: str, compiled: bool):
    """(plan, amp, compile) triples a bench part measures, most telling first (a part that runs out of time keeps
    what it measured); TASK_PLAN is the generated task's own small plan. None compiled on the CPU (minutes of C++
    builds; nnU-Net compiles on CUDA only)."""
    if device == "cpu":
        return [] if compiled else [(TASK_PLAN if quick else "hippocampus_3d_fullres", None, False)]
    return [(p, "fp16", compiled) for p in (PLANS_3D[:1] if quick else PLANS_3D)]


def bench_measures(device: str, compiled: bool) -> list:
    """What bench measures in a run: activation memory only on the CPU (exact bytes; the same network on a GPU),
    inference only eager (nnU-Net's predictor does not compile)."""
    return ["kernels", "train", *(["inference"] if not compiled else []), *(["activations"] if device == "cpu" else [])]


def sizes(quick: bool) -> dict:
    if quick:
        return {"cases": 5, "test_cases": 1, "shape": (16, 48, 48), "epochs": 2, "iterations": 2, "val": 1,
                "repeats": 1}
    return {"cases": 20, "test_cases": 4, "shape": (20, 48, 48), "epochs": 4, "iterations": 100, "val": 5,
            "repeats": 5}


class Check:
    def __init__(self, args):
        self.args, self.out = args, Path(args.o).resolve()
        self.work = self.out / "work"
        self.size = sizes(args.quick)
        self.env = {**os.environ, "nnUNet_raw": str(self.work / "nnUNet_raw"),
                    "nnUNet_preprocessed": str(self.work / "nnUNet_preprocessed"),
                    "nnUNet_results": str(self.work / "nnUNet_results"),
                    "nnUNet_extTrainer": os.pathsep.join(p for p in (os.environ.get("nnUNet_extTrainer"),
                                                                     str(HERE / "check_trainers")) if p),
                    "NNUNET_ATTENTION_EPOCHS": str(self.size["epochs"]),
                    "NNUNET_ATTENTION_ITERATIONS": str(self.size["iterations"]),
                    "NNUNET_ATTENTION_VAL_ITERATIONS": str(self.size["val"]),
                    # validation without mirroring, and left to grid's --val: device time goes to the training
                    "NNUNET_ATTENTION_MIRRORING": "0", "NNUNET_ATTENTION_FINAL_VALIDATION": "0"}
        self.env.setdefault("nnUNet_def_n_proc", bounded_export_workers())  # as the demo
        if args.device == "cpu":  # compile on the CPU costs minutes of C++ builds; nnU-Net's default is GPU-only
            self.env["nnUNet_compile"] = "f"
        self.results = {"machine": machine(args.device), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                        "quick": args.quick, "parts": {}}
        self.deadline = None
        # the generated task's steps, from the step model grid and demo use (nnU-Net's defaults: no --npz); --quick:
        # one process per nnU-Net pool (each spawned worker imports torch and nnU-Net, longer than its share of 5 cases)
        self.spec = steps.StudySpec([DATASET], ["3d_fullres"], [0], list(TRAINERS), device=args.device, npz=False,
                                   processes=1 if args.quick else 2)
        self.folders = steps.Folders.of(self.env)

    # --- running ---------------------------------------------------------------------------------------------------
    def run(self, command, log_name: str, env=None):
        """A command under the part's deadline, its output in OUT/logs/log_name."""
        self.run_steps([steps.Step("command", DATASET, tuple(map(str, command)))], env, log_name=log_name)

    def run_steps(self, to_run, env=None, log_name=None):
        """Steps one after the other (executor.LocalExecutor) under the part's deadline, logs in OUT/logs; a timeout
        names the step that was running and its log."""
        running = {}

        def started(step, log):
            running.update(step=" ".join(step.command[:8]) + (" ..." if len(step.command) > 8 else ""), log=log)
            print(f"    $ {' '.join(step.command)}", flush=True)

        if self.deadline - time.time() <= 0:
            raise PartTimeout(f"its time limit had passed before `{' '.join(map(str, to_run[0].command[:8]))}`")
        executor = LocalExecutor(env or self.env, str(self.out / "logs"), deadline=self.deadline,
                                 log_name=(lambda step: log_name) if log_name else None, on_start=started)
        try:
            failed = executor.run_steps(to_run)
        except StepTimeout:
            raise PartTimeout(f"its time limit passed during `{running.get('step')}` (stopped; log "
                              f"{running.get('log')})") from None
        if failed:
            raise RuntimeError(f"{' '.join(failed[0].command[:3])} failed; see {executor.log_file(failed[0])}")

    def part(self, name: str, limit: float, function):
        print(f"[{name}] (limit {limit:.0f} s)", flush=True)
        entry = self.results["parts"][name] = {"status": "running", "limit_s": limit}
        self.deadline, start = time.time() + limit, time.time()
        try:
            function(entry)
            entry["status"] = "ok"
        except PartSkipped as reason:
            entry["status"], entry["error"] = "skipped", str(reason)
            print(f"    SKIPPED: {reason}", flush=True)
        except (PartTimeout, RuntimeError, OSError, KeyError, ValueError) as error:
            entry["status"] = "timed out" if isinstance(error, PartTimeout) else "failed"
            entry["error"] = f"part {name} ({limit:.0f} s): {error}"
            print(f"    {entry['status'].upper()}: {entry['error']}", flush=True)
        entry["seconds"] = round(time.time() - start, 1)
        self.write()

    def write(self):
        (self.out / "gpu_check.json").write_text(json.dumps(self.results, indent=1))
        (self.out / "gpu_check.md").write_text(render(self.results))

    # --- parts -----------------------------------------------------------------------------------------------------
    def compiled(self, entry: dict):
        self.bench(entry, compiled=True)

    def eager(self, entry: dict):
        self.bench(entry, compiled=False)

    def bench(self, entry: dict, compiled: bool):
        runs = bench_runs(self.args.quick, self.args.device, compiled)
        if not runs:
            raise PartSkipped("torch.compile on the CPU takes minutes of C++ builds; nnU-Net compiles on CUDA only")
        entry["runs"] = []
        for plan, amp, compiled in runs:
            json_file = self.out / "logs" / f"bench_{plan}_{amp}_{'compile' if compiled else 'eager'}.json"
            if plan == TASK_PLAN:
                self.prepare_task()
                source = ["--plans", self.work / "nnUNet_preprocessed" / DATASET / "nnUNetPlans.json", "-c",
                          "3d_fullres"]
            else:
                source = ["-c", plan]
            self.run([*CLI, "bench", *source, "-device", self.args.device, "--repeats", self.size["repeats"],
                      *(["--amp", amp] if amp else []), *(["--compile"] if compiled else []),
                      "--measure", *bench_measures(self.args.device, compiled), "--json", json_file],
                     json_file.with_suffix(".log").name)
            (result,) = json.loads(json_file.read_text())["results"]
            entry["runs"].append(result)
            self.write()

    def prepare_task(self):
        """The generated task, converted and planned (steps.prepare_steps, as the demo and the tests' fixtures)."""
        task = self.work / "msd" / f"Task{TASK_ID:03d}_AttentionSynth"
        self.run_steps(steps.prepare_steps(str(task), self.spec, self.folders,
                                           {key: self.size[key] for key in ("cases", "test_cases", "shape")}))

    def trained_epoch_seconds(self, results: Path, trainer: str) -> list:
        from nnunet_attention.model.checkpoint import load_checkpoint

        folder = results / DATASET / model_identifier(trainer, PLANS, "3d_fullres") / "fold_0"
        logging = load_checkpoint(str(folder / "checkpoint_final.pth"), mmap=True)["logging"]
        return [e - s for s, e in zip(logging["epoch_start_timestamps"], logging["epoch_end_timestamps"])]

    def train(self, entry: dict):
        self.prepare_task()
        self.write()
        entry["epochs"], entry["iterations_per_epoch"] = self.size["epochs"], self.size["iterations"]
        entry["epoch_seconds"] = {}
        for step in steps.train_steps(self.spec, DATASET, self.folders):  # without --npz: grid validates again
            self.run(step.command, f"train_{step.trainer}.log")
            entry["epoch_seconds"][step.trainer] = self.trained_epoch_seconds(self.work / "nnUNet_results",
                                                                              step.trainer)
            self.write()
        after_first = [statistics.median(entry["epoch_seconds"][t][1:]) for t in TRAINERS]
        entry["epoch_ratio"] = after_first[1] / after_first[0]  # the first epoch holds torch.compile's compilation
        self.write()
        images = self.work / "nnUNet_raw" / DATASET / "imagesTs"
        # --quick: predicted as the demo predicts on the CPU (no mirroring, one process per stage: nnU-Net's 3 + 3
        # spawned processes outlast one tiny case), maps alike; otherwise nnU-Net's defaults (mirroring on)
        quick = self.args.quick
        timed = {}
        for name, command in (
                ("predict", ["nnUNetv2_predict", "-i", images, "-o", self.out / "predict", "-d", TASK_ID, "-c",
                             "3d_fullres", "-tr", TRAINERS[1], "-f", "0", "-device", self.args.device,
                             *(steps.CPU_PREDICTION if quick else [])]),
                ("maps", [*CLI, "maps", "-i", images, "-o", self.out / "maps", "-d", TASK_ID, "-c", "3d_fullres",
                          "-tr", TRAINERS[1], "-f", "0", "-device", self.args.device, "--no_png",
                          *(["--disable_tta", "-npp", "1"] if quick else [])])):
            start = time.time()
            self.run(command, f"{name}.log")
            timed[name] = time.time() - start
        entry["predict_seconds"], entry["maps_seconds"] = timed["predict"], timed["maps"]
        entry["maps_over_predict"] = timed["maps"] / timed["predict"]

    def pairing(self, entry: dict):
        import torch

        from nnunet_attention.model.checkpoint import load_checkpoint

        self.prepare_task()
        weights, entry["epoch_seconds"] = {}, {}
        for name in ("gated_1", "gated_2"):
            results = self.work / "pairing" / name
            self.run([*CLI, "train", TASK_ID, "3d_fullres", "0", "-tr", TRAINERS[1], "--seed", "0", "-device",
                      self.args.device], f"pairing_{name}.log", env={**self.env, "nnUNet_results": str(results)})
            folder = results / DATASET / model_identifier(TRAINERS[1], PLANS, "3d_fullres") / "fold_0"
            weights[name] = load_checkpoint(str(folder / "checkpoint_final.pth"))["network_weights"]
            entry["epoch_seconds"][name] = self.trained_epoch_seconds(results, TRAINERS[1])
            unpaired = self.results["parts"].get("train", {}).get("epoch_seconds", {}).get(TRAINERS[1])
            if name == "gated_1" and unpaired:  # the same trainer and schedule trained unpaired by the train part
                entry["paired_over_unpaired_epoch"] = (statistics.median(entry["epoch_seconds"][name][1:])
                                                       / statistics.median(unpaired[1:]))
            self.write()
        first, second = weights["gated_1"], weights["gated_2"]
        entry["repeat_max_weight_difference"] = max(float((first[k].float() - second[k].float()).abs().max())
                                                    for k in first)
        entry["repeat_identical"] = all(torch.equal(first[k], second[k]) for k in first)

    def grid(self, entry: dict):
        state_file = self.work / "nnUNet_results" / "nnunet_attention_grid" / "state.json"
        self.run([*CLI, "grid", "-d", TASK_ID, "-c", "3d_fullres", "-f", "0", "-tr", *TRAINERS, "-device",
                  self.args.device, "--executor", "local", "--poll-seconds", "2", "-np", "2"], "grid.log")
        jobs = json.loads(state_file.read_text())["jobs"]
        entry["jobs"] = {}
        for key, job in jobs.items():
            lines = Path(job["log"]).read_text(errors="replace").splitlines() if Path(job["log"]).is_file() else []
            seen = [line.split("=", 1)[1] for line in lines if line.startswith("CUDA_VISIBLE_DEVICES=")]
            entry["jobs"][key] = {"gpu": job.get("gpu"), "cuda_visible_devices": seen[0] if seen else None}
        visible = [j["cuda_visible_devices"] for j in entry["jobs"].values()]
        entry["pinned"] = bool(visible) and all(v is not None and v.isdigit() for v in visible)
        if self.args.device == "cuda" and not entry["pinned"]:
            raise RuntimeError(f"grid jobs were not pinned to one GPU: {visible}")


def machine(device: str) -> dict:
    import torch
    from importlib.metadata import version

    info = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda, "nnunetv2": version("nnunetv2"),
            "python": platform.python_version(), "host": platform.node(), "cpus": os.cpu_count(),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        info.update(card=properties.name, memory_gib=round(properties.total_memory / 2 ** 30, 1),
                    cards=torch.cuda.device_count())
    return info


def _ratio(run: dict, key: str) -> str:
    return f"{run[key]['ratio']:.3f}" if key in run else "n/a"


def render(results: dict) -> str:
    m = results["machine"]
    card = f"{m.get('card', 'CPU')} ({m.get('memory_gib', '-')} GiB)" if m["device"] == "cuda" else "CPU"
    lines = ["# GPU check", "", f"{card}; torch {m['torch']} (CUDA {m['cuda']}), nnunetv2 {m['nnunetv2']}, "
             f"{m['date']}; `{results['command']}`{' (quick sizes)' if results['quick'] else ''}.", "",
             "Ratios are gated / ungated, measured in one process with alternating runs.", ""]
    for name, part in results["parts"].items():
        lines.append(f"- part **{name}**: {part['status']} in {part.get('seconds', '?')} s of {part['limit_s']:.0f}"
                     + (f" — {part['error']}" if part.get("error") else ""))
    bench = [run for part in ("compiled", "eager") for run in results["parts"].get(part, {}).get("runs", [])]
    lines += ["", "## GPU table", "",
              "| plan | autocast | compile | params | train step | peak memory | inference | kernels (gated / ungated) "
              "| graph breaks (gated / ungated) |", "|---|---|---|---|---|---|---|---|---|"]
    for run in bench:
        breaks, kernels = run.get("graph_breaks"), run.get("kernels")
        lines.append(f"| {run['name']} | {run['amp'] or 'off'} | {'on' if run['compile'] else 'off'} | "
                     f"{_ratio(run, 'parameters')} | {_ratio(run, 'train_step_seconds')} | "
                     f"{_ratio(run, 'train_peak_memory_bytes')} | {_ratio(run, 'inference_seconds')} | "
                     + (f"{kernels['gated']} / {kernels['ungated']}" if kernels else "n/a") + " | "
                     + (f"{breaks['gated']['breaks']} / {breaks['ungated']['breaks']}" if breaks else "n/a") + " |")
    train = results["parts"].get("train", {})
    if train.get("epoch_seconds"):
        seconds = "; ".join(f"{t}: " + ", ".join(f"{s:.1f}" for s in v) for t, v in train["epoch_seconds"].items())
        lines += ["", f"nnUNetv2_train, {train['epochs']} epochs of {train['iterations_per_epoch']} iterations, "
                      f"nnU-Net's defaults: epoch seconds {seconds}"
                  + (f"; epoch-time ratio **{train['epoch_ratio']:.3f}** (medians of the epochs after the first, "
                     "which holds compilation)." if "epoch_ratio" in train else ".")]
    if "maps_over_predict" in train:
        lines.append(f"maps {train['maps_seconds']:.1f} s vs nnUNetv2_predict {train['predict_seconds']:.1f} s: "
                     f"**{train['maps_over_predict']:.2f}**.")
    pairing = results["parts"].get("pairing", {})
    if "paired_over_unpaired_epoch" in pairing:
        lines.append(f"Pairing's cost: a paired gated epoch over an unpaired one (medians after the first epoch) "
                     f"**{pairing['paired_over_unpaired_epoch']:.3f}**.")
    if "repeat_identical" in pairing:
        lines.append(f"Paired trainings (seed 0, cuDNN deterministic): the gated training twice "
                     f"{'**repeats exactly**' if pairing['repeat_identical'] else '**does not repeat**'} (largest "
                     f"weight difference {pairing['repeat_max_weight_difference']:.3g}).")
    grid = results["parts"].get("grid", {})
    if "jobs" in grid:
        lines.append("grid jobs and the CUDA_VISIBLE_DEVICES each saw: " + "; ".join(
            f"{k}: {v['cuda_visible_devices']}" for k, v in grid["jobs"].items()) + f" (pinned: {grid['pinned']}).")
    return "\n".join(lines) + "\n"


def part_limits(text: list, device: str) -> dict:
    """--limits PART=SECONDS ... over the device's defaults."""
    limits = dict(DEFAULT_LIMITS[device])
    for item in text or ():
        name, _, seconds = item.partition("=")
        try:
            limits[name], valid = float(seconds), name in PARTS and float(seconds) > 0
        except ValueError:
            valid = False
        if not valid:
            sys.exit(f"gpu_check: --limits {item}: write PART=SECONDS with PART one of {', '.join(PARTS)} and "
                     "SECONDS > 0")
    return limits


def plan_lines(args, limits: dict) -> list:
    size = sizes(args.quick)
    schedule = f"{size['epochs']} epochs x {size['iterations']} iterations"
    def bench(compiled):
        return "nnunet-attention bench " + ("; ".join(
            f"{p} autocast {a or 'off'} ({' '.join(bench_measures(args.device, c))})"
            for p, a, c in bench_runs(args.quick, args.device, compiled)) or "skipped on the CPU")

    what = {"compiled": "compile on: " + bench(True), "eager": "compile off: " + bench(False),
            "train": f"synth {size['cases']}+{size['test_cases']} cases {'x'.join(map(str, size['shape']))}, "
                     f"nnUNetv2_train 3d_fullres fold 0 -tr {' and '.join(TRAINERS)} ({schedule}; epoch-time ratio; "
                     "final validation left to grid), nnUNetv2_predict and maps on imagesTs",
            "pairing": f"nnunet-attention train 3d_fullres fold 0 --seed 0: {TRAINERS[1]} twice ({schedule}; do "
                       "paired trainings repeat? paired epoch time over the train part's unpaired one)",
            "grid": f"nnunet-attention grid --executor local -f 0 -tr {' '.join(TRAINERS)} (validates with --npz, "
                    "find_best, compare)"}
    return [f"{name} ({limits[name]:.0f} s): {what[name]}" for name in args.parts]


def chosen_parts(names: list) -> list:
    """--parts: names in the order given, or "all" (both commands, in order of value)."""
    return list(PARTS) if names == ["all"] else names


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", required=True, help="output folder (gpu_check.json, gpu_check.md, logs, work)")
    parser.add_argument("-device", "--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, no mirroring in prediction (the CPU test of this script)")
    parser.add_argument("--dry-run", action="store_true", help="print the parts, their limits and what they run")
    parser.add_argument("--parts", nargs="+", choices=[*PARTS, "all"], default=list(COMMANDS[0]),
                        help=f"the parts to run, in the order given (default: {' '.join(COMMANDS[0])}; then, as a "
                             f"second command: {' '.join(COMMANDS[1])}; all: every part in one command)")
    parser.add_argument("--limits", nargs="+", metavar="PART=SECONDS",
                        help="time limit per part (defaults: " + "; ".join(
                            f"{d}: " + " ".join(f"{k}={v:.0f}" for k, v in limits.items())
                            for d, limits in DEFAULT_LIMITS.items()) + ")")
    args = parser.parse_args()
    args.parts = chosen_parts(args.parts)
    limits = part_limits(args.limits, args.device)
    plan = plan_lines(args, limits)
    if args.dry_run:
        total = sum(limits[name] for name in args.parts)
        print(f"gpu_check on {args.device}{' (quick)' if args.quick else ''}, output {args.o}; parts in this order, "
              f"limits summing to {total:.0f} s ({total / 60:.1f} min):")
        print("\n".join(f"  {line}" for line in plan))
        rest = COMMANDS[1] if args.parts == list(COMMANDS[0]) else ()
        if rest:
            print(f"then, as a second command: --parts {' '.join(rest)} "
                  f"({sum(limits[name] for name in rest):.0f} s)")
        return
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: torch sees no CUDA device; use --device cpu --quick to test the script on a CPU")
    check = Check(args)
    shutil.rmtree(check.work, ignore_errors=True)
    (check.out / "logs").mkdir(parents=True, exist_ok=True)
    print(f"gpu_check on {check.results['machine'].get('card', args.device)}", flush=True)
    for name in args.parts:
        check.part(name, limits[name], getattr(check, name))
    print(render(check.results))
    print(f"{check.out / 'gpu_check.md'}, {check.out / 'gpu_check.json'}")
    if any(p["status"] not in ("ok", "skipped") for p in check.results["parts"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
