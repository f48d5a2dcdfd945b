"""The ``nnunet-attention`` command. Subcommands import their heavy modules only when they run."""
import argparse
import os
import sys
import warnings


from nnunet_attention.errors import NnUNetAttentionError as UserError


def _writable(path: str):
    """Refuses a path whose nearest existing folder cannot be written to."""
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {path}: {parent} is not a writable folder")


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output_folder(path: str, *input_folders: str):
    """Refuses an output folder that is an existing file, is or lies inside an input folder, or is not writable."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"-o {path} is an existing file; give a folder")
    for folder in input_folders:
        if _inside(path, folder):
            raise UserError(f"-o {path} is inside the input folder {folder}; write the results to another folder")
    _writable(path)


def check_output_file(path: str, inputs=(), overwrite: bool = False):
    """Refuses an output file that is a folder, an input, an existing file (unless overwrite) or not writable."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder; give a file name")
    for i in inputs:
        if os.path.exists(path) and os.path.samefile(path, i):
            raise UserError(f"the output {path} is the input {i}; write to another file (the input stays as it is)")
    if os.path.exists(path) and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it, or choose another name")
    _writable(os.path.dirname(os.path.abspath(path)))


def _trainers(args):
    import inspect

    from nnunet_attention import _discovery, trainers
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    if args.path:
        print(_discovery.TRAINER_FOLDER)
        return
    names = sorted(name for name, obj in inspect.getmembers(trainers, inspect.isclass)
                   if issubclass(obj, nnUNetTrainer) and obj.__module__ == trainers.__name__)
    print("\n".join(names))
    print(f"\nnnU-Net finds these through nnUNet_extTrainer={os.environ.get('nnUNet_extTrainer', '')}",
          file=sys.stderr)


def _synth(args):
    from nnunet_attention.synth import write_msd_task

    def progress(done, total):
        print(f"\rsynth: {done}/{total} cases", end="" if done < total else "\n", file=sys.stderr)

    check_output_folder(args.o)
    try:
        task = write_msd_task(args.o, args.task_id, args.cases, args.test_cases, args.seed, progress=progress,
                              overwrite=args.overwrite)
    except ValueError as e:
        raise UserError(str(e)) from None
    print(task)


def _dataset_results(dataset: str) -> str:
    from nnunetv2.paths import nnUNet_results

    from nnunet_attention.nnunet_api import dataset_name

    if not nnUNet_results.is_set():
        raise UserError("nnUNet_results is not set; export it as for nnU-Net (documentation/setting_up_paths.md)")
    return os.path.join(nnUNet_results.get(), dataset_name(dataset))


def _compare(args):
    if args.tr[0] == args.tr[1]:
        raise UserError(f"-tr names {args.tr[0]} twice; compare two different trainers (e.g. nnUNetTrainer "
                        f"nnUNetTrainerAttention)")
    if any(t <= 0 for t in args.nsd_tolerance):
        raise UserError(f"--nsd-tolerance must be positive (mm), got {args.nsd_tolerance}")
    if args.np < 1:
        raise UserError(f"-np must be at least 1, got {args.np}")
    _run_compare(args.d, args.c, args.tr, args.p, args.f, args.o, args.nsd_tolerance, args.np)


def _require_nnunet_paths(*names):
    for name in names:
        if not os.environ.get(name):
            raise UserError(f"{name} is not set; export it as for nnU-Net (documentation/setting_up_paths.md)")


def _run_compare(datasets, configurations, trainers, plans, folds, output, nsd_tolerance, processes) -> dict:
    """compare over the datasets that exist (the others named as missing); prints where the report is."""
    from nnunet_attention.compare import DatasetSource, compare
    from nnunet_attention.nnunet_api import dataset_name

    _require_nnunet_paths("nnUNet_results", "nnUNet_preprocessed")
    sources, missing = [], []
    for dataset in dict.fromkeys(datasets):
        try:
            name = dataset_name(dataset)
        except UserError as e:
            if len(datasets) == 1:
                raise
            missing.append(f"{dataset} ({e})")
            continue
        sources.append(DatasetSource(name, os.path.join(os.environ["nnUNet_results"], name),
                                     os.path.join(os.environ["nnUNet_preprocessed"], name)))
    if not sources:
        raise UserError("none of the datasets was found: " + "; ".join(missing))
    default = (os.path.join(sources[0].results, "nnunet_attention_compare") if len(datasets) == 1 else
               os.path.join(os.environ["nnUNet_results"], "nnunet_attention_compare"))
    output = output or default
    check_output_folder(output)

    def log(message, final):
        print(f"\r{message}", end="\n" if final else "", file=sys.stderr, flush=True)

    report = compare(sources, configurations, trainers, plans, folds, output, nsd_tolerance, processes, missing,
                     log=log)
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    for item in report["missing"]:
        print(f"missing: {item}", file=sys.stderr)
    if report["missing"]:
        print("the report is incomplete: it covers the results that exist", file=sys.stderr)
    print(os.path.join(output, "report.md"))
    return report


def _grid(args):
    from nnunet_attention.grid import ExecutorOptions, Grid, GridSpec, log_tail, plan_steps
    from nnunet_attention.nnunet_api import dataset_name

    _require_nnunet_paths("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
    if len(set(args.tr)) < 2:
        raise UserError("-tr needs at least two different trainers (e.g. nnUNetTrainer nnUNetTrainerAttention)")
    if args.max_parallel < 0:
        raise UserError(f"--max-parallel must be 0 (automatic) or more, got {args.max_parallel}")
    if args.executor == "local" and any(v for v in (args.slurm_partition, args.slurm_gpus_per_job,
                                                    args.slurm_cpus_per_job, args.slurm_mem, args.slurm_time,
                                                    args.slurm_setup)):
        raise UserError("--slurm-* options need --executor slurm")
    for name in ("slurm_gpus_per_job", "slurm_cpus_per_job"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be 0 or more")
    if args.executor == "slurm" and not args.status:
        from shutil import which

        if which("sbatch") is None or which("squeue") is None:
            raise UserError("--executor slurm needs SLURM's sbatch and squeue on PATH; run the grid on a login "
                            "node, or use --executor local")
    if args.device == "cuda" and args.executor == "local" and not args.status and not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            raise UserError("-device cuda, but torch sees no CUDA device here; use -device cpu, or --executor slurm")
    datasets = [dataset_name(d) for d in dict.fromkeys(args.d)]
    spec = GridSpec(datasets, args.c, [str(f) for f in args.f], list(dict.fromkeys(args.tr)), args.p, args.device,
                    args.npz)
    options = ExecutorOptions(args.executor, args.max_parallel, args.slurm_partition, args.slurm_gpus_per_job,
                              args.slurm_cpus_per_job, args.slurm_mem, args.slurm_time, args.slurm_setup or ())
    grid = Grid(spec, options, log=lambda line: print(line, flush=True), poll_seconds=args.poll_seconds)
    steps = plan_steps(spec)
    if args.status:
        _print_status(grid.status_rows(steps))
        return
    if args.dry_run:
        for step in steps:
            print(f"{'done' if step.done else 'todo'}  {step.key}" + ("" if step.done else
                                                                       f"\n      $ {' '.join(step.command)}"))
        print("(the find_best commands run once their dataset's trainings are done; then compare)")
        return
    failed = grid.run_steps([s for s in steps if s.kind == "plan"])
    if not failed:
        steps = plan_steps(spec)  # train commands depend on what exists now (--c, --val)
        failed = grid.run_steps([s for s in steps if s.kind == "train"])
        steps = plan_steps(spec)
        trained = {d for d in datasets if all(s.done for s in steps if s.kind == "train" and s.dataset == d)}
        failed += grid.run_steps([s for s in steps if s.kind == "find_best" and s.dataset in trained])
    steps = plan_steps(spec)
    if any(s.done for s in steps if s.kind == "train"):
        pairs = [(spec.trainers[0], t) for t in spec.trainers[1:]]
        for a, b in pairs:
            output = None if len(pairs) == 1 else os.path.join(os.environ["nnUNet_results"],
                                                               f"nnunet_attention_compare_{a}_vs_{b}")
            _run_compare(args.d, args.c, [a, b], args.p, [int(f) if f != "all" else f for f in spec.folds], output,
                         [1.0], args.np)
    missing = [s for s in steps if not s.done]
    if missing or failed:
        for step in failed:
            job = grid.state["jobs"].get(step.key, {})
            print(f"\nFAILED {step.key} (job {job.get('job_id')}), log {job.get('log')}:\n{log_tail(job.get('log'))}",
                  file=sys.stderr)
        print(f"\nthe grid is incomplete: {len(missing)} step(s) not done "
              f"({', '.join(s.key for s in missing[:5])}{' ...' if len(missing) > 5 else ''}); run the same command "
              f"again to continue where it stands", file=sys.stderr)
        sys.exit(1)
    print("grid complete: every run trained and validated")


def _print_status(rows):
    header = ("step", "dataset", "configuration", "fold", "trainer", "state", "epoch", "job", "log")
    table = [header] + [tuple("" if r[k] is None else str(r[k]) for k in header) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])


def _demo(args):
    from nnunet_attention.demo import run_demo

    check_output_folder(args.o, *([args.i] if args.i else []))
    run_demo(args.o, args.i, args.d, args.c, args.device, args.f, args.trainers, args.epochs)


def _bench(args):
    import json

    from nnunet_attention.bench import bench_configuration, format_table, gated_trainer_class, load_configurations

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("-device cuda asked for, but torch sees no CUDA device; use -device cpu")
    if args.repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {args.repeats}")
    if args.plans and not os.path.isfile(args.plans):
        raise UserError(f"plans file not found: {args.plans}")
    if args.json:
        check_output_file(args.json, overwrite=True)
    configurations = load_configurations(args.plans, args.c)
    gated_trainer_class(args.tr)
    results = []
    for i, (name, configuration) in enumerate(configurations.items(), start=1):
        print(f"[{i}/{len(configurations)}] {name}", file=sys.stderr, flush=True)
        results.append(bench_configuration(name, configuration, args.device, args.repeats, args.amp, args.compile,
                                           gated_trainer=args.tr))
    print(format_table(results))
    if args.json:
        with open(args.json + ".partial", "w") as f:
            json.dump({"results": results}, f, indent=2)
        os.replace(args.json + ".partial", args.json)
        print(f"JSON: {args.json}", file=sys.stderr)


def _folds(values):
    return [v if v == "all" else int(v) for v in values]


def _maps(args):
    import torch
    from nnunet_attention.maps import AttentionMapPredictor
    from nnunet_attention.nnunet_api import model_folder as get_model_folder

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("-device cuda asked for, but torch sees no CUDA device; use -device cpu")
    if not os.path.isdir(args.i):
        raise UserError(f"input folder not found: {args.i}")
    if args.npp < 1:
        raise UserError(f"-npp must be at least 1, got {args.npp}")
    if not 0 < args.step_size <= 1:
        raise UserError(f"-step_size must be in (0, 1] (a fraction of the patch size), got {args.step_size}")
    check_output_folder(args.o, args.i)
    _dataset_results(args.d)
    model_folder = get_model_folder(args.d, args.tr, args.p, args.c)
    if not os.path.isdir(model_folder):
        raise UserError(f"no trained model at {model_folder}; check -d, -c, -tr and -p")
    predictor = AttentionMapPredictor(tile_step_size=args.step_size, use_gaussian=True,
                                      use_mirroring=not args.disable_tta,
                                      perform_everything_on_device=device == "cuda", device=torch.device(device),
                                      allow_tqdm=not args.disable_progress_bar)
    try:
        predictor.initialize_for_maps(model_folder, _folds(args.f), args.chk, args.levels, args.trust_checkpoint)
        cases, summary = predictor.predict_maps_from_folder(args.i, args.o, args.npp, write_png=not args.no_png)
    except FileNotFoundError as e:
        raise UserError(f"not found: {e.filename or e} (train that fold first, or pick -f / -chk)") from None
    for level in predictor.levels:
        rows = [r for r in summary if r["level"] == level]
        inside = [r["mean_alpha_foreground"] for r in rows if r["foreground_voxels"]]
        elsewhere = [r["mean_alpha_elsewhere"] for r in rows]
        print(f"level {level}: mean alpha {sum(inside) / len(inside) if inside else float('nan'):.3f} in the "
              f"predicted foreground, {sum(elsewhere) / len(elsewhere):.3f} elsewhere (mean over cases)")
    print(f"{len(cases)} case(s): segmentations, attention maps and attention_summary.csv in {args.o}")


def _retrofit(args):
    from nnunet_attention.retrofit import retrofit_checkpoint

    if not os.path.isfile(args.i):
        raise UserError(f"checkpoint not found: {args.i}")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.o))):
        raise UserError(f"output folder does not exist: {os.path.dirname(os.path.abspath(args.o))}")
    check_output_file(args.o, [args.i], args.overwrite)
    summary = retrofit_checkpoint(args.i, args.o, args.tr, trust_checkpoint=args.trust_checkpoint)
    print(f"{args.o}: {summary['copied_tensors']} tensors copied, {summary['gates']} identity gates "
          f"({summary['configuration']}). Train with: nnUNetv2_train DATASET {summary['configuration']} FOLD "
          f"-tr {summary['trainer']} -pretrained_weights {args.o}")


class _Parser(argparse.ArgumentParser):
    """Accepts every spelling of an option: nnU-Net's single-dash words (-device, -step_size) also with two dashes,
    and snake_case / kebab-case pairs (--disable_tta, --disable-tta); help shows the first spelling."""

    def add_argument(self, *names, **kwargs):
        spellings = []
        for name in names:
            doubled = "-" + name if name.startswith("-") and not name.startswith("--") and len(name) > 4 else name
            variants = [name, doubled]
            if doubled.startswith("--"):
                variants += ["--" + doubled[2:].replace("_", "-"), "--" + doubled[2:].replace("-", "_")]
            spellings += [v for v in dict.fromkeys(variants) if v not in spellings]
        if spellings[0].startswith("-") and "dest" not in kwargs:
            kwargs["dest"] = spellings[0].lstrip("-").replace("-", "_")
        return super().add_argument(*spellings, **kwargs)


def _default_processes() -> int:
    from nnunetv2.configuration import default_num_processes

    return default_num_processes


TRUST_HELP = ("load the checkpoint even if it holds pickled objects beyond what nnU-Net checkpoints contain; this "
              "RUNS CODE FROM THE FILE: only for files whose origin you trust")


def build_parser() -> argparse.ArgumentParser:
    from nnunet_attention.synth import DEFAULT_TASK_ID

    parser = _Parser(prog="nnunet-attention",
                                     description="Attention-gated U-Nets for nnU-Net v2: tools around the trainers.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("trainers", help="list our nnU-Net trainers (or, with --path, the folder nnU-Net searches)")
    p.add_argument("--path", action="store_true", help="print only the trainer folder, for nnUNet_extTrainer")
    p.set_defaults(func=_trainers)

    p = sub.add_parser("synth", help="write a synthetic 3D task in the Medical Segmentation Decathlon layout")
    p.add_argument("-o", required=True, help="folder to write TaskNNN_AttentionSynth into")
    p.add_argument("--task-id", type=int, default=DEFAULT_TASK_ID, help=f"task number (default {DEFAULT_TASK_ID})")
    p.add_argument("--cases", type=int, default=24, help="training cases (default 24)")
    p.add_argument("--test-cases", type=int, default=4, help="test cases in imagesTs (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing task folder of the same name")
    p.set_defaults(func=_synth)

    p = sub.add_parser("compare", help="report two trainers side by side from nnUNet_results (Dice, NSD, HD95; "
                                       "one or several datasets)")
    p.add_argument("-d", nargs="+", required=True, help="dataset name(s) or id(s); several give one report")
    p.add_argument("-c", nargs="+", required=True, help="configuration(s), e.g. 3d_fullres")
    p.add_argument("-tr", nargs=2, required=True, metavar=("TRAINER_A", "TRAINER_B"),
                   help="the two trainers; differences are B minus A (e.g. nnUNetTrainer nnUNetTrainerAttention)")
    p.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    p.add_argument("-f", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="folds (default 0 1 2 3 4)")
    p.add_argument("-o", help="output folder (default nnUNet_results/DATASET/nnunet_attention_compare; with "
                              "several datasets nnUNet_results/nnunet_attention_compare)")
    p.add_argument("--nsd-tolerance", nargs="+", type=float, default=[1.0], metavar="MM",
                   help="NSD tolerance in mm: one value, or one per class in dataset.json's order (default 1.0)")
    p.add_argument("-np", type=int, default=_default_processes(),
                   help="processes for the boundary metrics (default: nnU-Net's default_num_processes, %(default)s)")
    p.set_defaults(func=_compare)

    p = sub.add_parser("grid", help="the datasets x configurations x folds x trainers study, locally or on SLURM "
                                    "(submitit), resumable; ends with compare")
    p.add_argument("-d", nargs="+", required=True, help="dataset names or ids (already in nnUNet_raw)")
    p.add_argument("-c", nargs="+", default=["3d_fullres"], help="configurations (default 3d_fullres)")
    p.add_argument("-f", nargs="+", default=["0", "1", "2", "3", "4"], help="folds (default 0 1 2 3 4)")
    p.add_argument("-tr", nargs="+", default=["nnUNetTrainer", "nnUNetTrainerAttention"],
                   help="trainers; the first is the reference of the comparison (default %(default)s)")
    p.add_argument("-p", default="nnUNetPlans", help="plans identifier (default %(default)s)")
    p.add_argument("-device", choices=["cuda", "cpu"], default="cuda", help="training device (default cuda)")
    p.add_argument("--npz", action=argparse.BooleanOptionalAction, default=True,
                   help="keep validation softmax for find_best_configuration's ensembles (default on)")
    p.add_argument("--executor", choices=["local", "slurm"], default="local", help="default local")
    p.add_argument("--max-parallel", type=int, default=0,
                   help="at most this many jobs at once (default: local one per visible GPU or 1; slurm no limit)")
    p.add_argument("--slurm-partition", help="sbatch --partition")
    p.add_argument("--slurm-gpus-per-job", type=int, help="GPUs per job (sbatch --gpus-per-node)")
    p.add_argument("--slurm-cpus-per-job", type=int, help="CPUs per job (sbatch --cpus-per-task)")
    p.add_argument("--slurm-mem", help="memory per job, e.g. 32G (sbatch --mem)")
    p.add_argument("--slurm-time", help="time limit per job, minutes or D-HH:MM:SS (sbatch --time)")
    p.add_argument("--slurm-setup", action="append", metavar="COMMAND",
                   help="a shell line run before each job, e.g. \"module load cuda\" (repeatable)")
    p.add_argument("--status", action="store_true", help="print the grid's table (state, epoch, log) and exit")
    p.add_argument("--dry-run", action="store_true", help="print what would run and what is done, run nothing")
    p.add_argument("-np", type=int, default=_default_processes(), help="processes for compare's boundary metrics")
    p.add_argument("--poll-seconds", type=float, default=10.0, help="how often job states are checked (default 10)")
    p.set_defaults(func=_grid)

    p = sub.add_parser("demo", help="gated vs ungated end to end through nnU-Net's commands (resumable)")
    p.add_argument("-o", default="nnunet_attention_demo",
                   help="work folder; holds nnU-Net's folders unless nnUNet_raw etc. are set (default %(default)s)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("-i", help="an MSD task folder (e.g. Task04_Hippocampus) instead of the generated task")
    source.add_argument("-d", type=int, help="an nnU-Net dataset id already in nnUNet_raw")
    p.add_argument("-c", default="3d_fullres", help="configuration (default 3d_fullres)")
    p.add_argument("-device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    p.add_argument("-f", nargs="+", type=int, default=[0], help="folds to train (default 0)")
    p.add_argument("--trainers", nargs=2, metavar=("UNGATED", "GATED"), help="trainer pair (default: by --epochs)")
    p.add_argument("--epochs", type=int,
                   help="nnU-Net schedule length; picks nnUNetTrainer_Nepochs and nnUNetTrainerAttention_Nepochs "
                        "(default 1 on cpu, 100 on cuda; 1000 = nnU-Net's full schedule)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("bench", help="gated/ungated cost ratios: parameters, train step, memory, inference")
    p.add_argument("--plans", help="an nnUNetPlans.json (default: built-in plans shaped like real MSD plans)")
    p.add_argument("-c", nargs="+", help="configurations of --plans (default: all but the cascade)")
    p.add_argument("-device", choices=["cpu", "cuda"], default="cpu", help="default cpu")
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions per variant (default 5)")
    p.add_argument("--amp", choices=["fp16", "bf16"], help="autocast dtype for the train step (cuda)")
    p.add_argument("--compile", action="store_true", help="torch.compile both networks")
    p.add_argument("-tr", default="nnUNetTrainerAttention",
                   help="gated trainer whose network is measured (default %(default)s)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(func=_bench)

    p = sub.add_parser("maps", help="predict like nnUNetv2_predict, plus each gate's attention map in the input's "
                                    "geometry and a PNG per case")
    p.add_argument("-i", required=True, help="input folder (nnU-Net naming: CASE_0000.nii.gz, ...)")
    p.add_argument("-o", required=True,
                   help="output folder: CASE.nii.gz, CASE_attention_levelL.nii.gz, CASE_attention.png")
    p.add_argument("-d", required=True, help="dataset name or id")
    p.add_argument("-c", required=True, help="configuration")
    p.add_argument("-tr", default="nnUNetTrainerAttention", help="trainer (default %(default)s)")
    p.add_argument("-p", default="nnUNetPlans", help="plans identifier (default %(default)s)")
    p.add_argument("-f", nargs="+", default=["0", "1", "2", "3", "4"], help="folds (default 0 1 2 3 4; or all)")
    p.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint name (default %(default)s)")
    p.add_argument("--levels", nargs="+", type=int, help="gated levels to export, 0 = finest (default: all)")
    p.add_argument("-device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    p.add_argument("--disable_tta", action="store_true", help="no mirroring (test-time augmentation)")
    p.add_argument("-step_size", type=float, default=0.5, help="sliding-window step (default 0.5)")
    p.add_argument("-npp", type=int, default=2, help="preprocessing processes (default 2)")
    p.add_argument("--no_png", action="store_true", help="skip the PNG overviews")
    p.add_argument("--disable_progress_bar", action="store_true")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=_maps)

    p = sub.add_parser("retrofit", help="turn an ungated nnU-Net checkpoint into gated pretrained weights that "
                                        "compute exactly what it computes")
    p.add_argument("-i", required=True, help="ungated checkpoint, e.g. .../fold_0/checkpoint_final.pth")
    p.add_argument("-o", required=True, help="output .pth for nnUNetv2_train -pretrained_weights")
    p.add_argument("-tr", default="nnUNetTrainerAttention", help="gated trainer to build for (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o file (never the input)")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=_retrofit)
    return parser


def main(argv=None):
    # libraries' deprecation notices (torch.jit, timm) would bury our one-line messages
    warnings.filterwarnings("ignore", category=FutureWarning)
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"nnunet-attention {args.command}: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
