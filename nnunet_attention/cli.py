"""The ``nnunet-attention`` command: parses and dispatches; each subcommand's work and checks live in its module.
Subcommands import their heavy modules only when they run."""
import argparse
import os
import sys
import warnings

from nnunet_attention.compare.metrics import margin_examples
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.study.backends import BACKENDS, add_backend_flags
from nnunet_attention.study.steps import NNUNET_FOLD_IDS


def fold(value: str):
    """nnU-Net's fold argument: an int, or "all"."""
    return value if value == "all" else int(value)


def margin(value: str):
    """METRIC=VALUE for --margin, e.g. dice=0.02 (checked against the metrics by compare)."""
    metric, sep, number = value.partition("=")
    try:
        return metric.strip().lower(), float(number) if sep else float("nan")
    except ValueError:
        raise argparse.ArgumentTypeError(f"--margin takes METRIC=VALUE, e.g. {margin_examples().split()[0]}; got "
                                         f"{value}")


def _margins(args):
    """--margin as Margins, checked here once; None when not given (each command then uses its default margins)."""
    from nnunet_attention.compare.metrics import Margins

    return Margins(dict(args.margin)) if args.margin else None


def _trainers(args):
    from nnunet_attention.model import discovery

    if args.path:  # without importing torch and nnU-Net: seconds in a shell script
        print(discovery.TRAINER_FOLDER)
        return
    if args.install or args.remove:
        try:
            path = discovery.install_shim() if args.install else discovery.remove_shim()
        except OSError as e:
            raise NnUNetAttentionError(f"trainers --{'install' if args.install else 'remove'}: {e}") from None
        print(f"{'wrote' if args.install else 'removed'} {path}")
        return
    from nnunet_attention.model import trainers
    from nnunet_attention.nnunet_api import trainers_found_through_ext_folder

    print("\n".join(trainers.trainer_names()))
    if trainers_found_through_ext_folder():
        print(f"\nnnU-Net finds these through nnUNet_extTrainer={os.environ.get('nnUNet_extTrainer', '')}",
              file=sys.stderr)
    elif os.path.isfile(discovery.shim_path()):
        print(f"\nnnU-Net finds these through {discovery.shim_path()} (trainers --install)", file=sys.stderr)
    else:
        print("\nthis nnU-Net searches only its own trainer folder: run nnunet-attention trainers --install once "
              "so that it finds these", file=sys.stderr)


def _synth(args):
    from nnunet_attention.files import check_output_folder
    from nnunet_attention.study.synth import write_msd_task

    def progress(done, total):
        print(f"\rsynth: {done}/{total} cases", end="" if done < total else "\n", file=sys.stderr)

    check_output_folder(args.o)
    print(write_msd_task(args.o, args.task_id, args.cases, args.test_cases, args.seed, shape=tuple(args.shape),
                         progress=progress, overwrite=args.overwrite))


def _splits(args):
    from nnunet_attention.nnunet_api import dataset_name, nnunet_folder, require_variables
    from nnunet_attention.study.splits import NNUNET_SPLIT_SEED, extend_splits_file

    require_variables("nnUNet_preprocessed")
    name = dataset_name(args.d)
    done = extend_splits_file(os.path.join(nnunet_folder("nnUNet_preprocessed"), name), args.repeats)
    k, new = done["folds_per_repeat"], done["new_folds"]
    print(f"{name}: {done['repeats']} × {k}-fold in {done['file']} (folds 0-{k - 1} nnU-Net's own, unchanged)")
    if new:
        print(f"added folds {new[0]}-{new[-1]} (repeats {done['repeats_before']}-{done['repeats'] - 1}, split seeds "
              f"{NNUNET_SPLIT_SEED} + repeat); the file before: {done['backup']}")
        print(f"train them as nnU-Net folds, both trainers each: nnUNetv2_train {args.d} CONFIG {new[0]} -tr TRAINER "
              f"--npz ... then: nnunet-attention compare -d {args.d} -c CONFIG -tr A B -f 0 1 ... {new[-1]}")
    else:
        print("nothing added: the file already holds that many repeats")


def _progress_line(message, final):
    """A progress line redrawn in place on a terminal; in a log, only the final one of each."""
    if sys.stderr.isatty():
        print(f"\r{message}", end="\n" if final else "", file=sys.stderr, flush=True)
    elif final:
        print(message, file=sys.stderr, flush=True)


def _compare(args):
    from nnunet_attention.compare.pipeline import compare_datasets

    compare_datasets(args.d, args.c, args.tr, args.p, args.f, args.o, args.nsd_tolerance, args.np,
                     log=_progress_line, margins=_margins(args), overwrite=args.overwrite)


def _grid(args):
    from nnunet_attention.study.grid import ExecutorOptions, StudySpec, dry_run, run_grid, status_table
    from nnunet_attention.study.steps import Folders, check_names
    from nnunet_attention.devices import resolve_device
    from nnunet_attention.nnunet_api import dataset_name, require_variables

    margins = _margins(args)
    require_variables("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
    if args.device is None and args.executor != "local":
        raise NnUNetAttentionError(f"-device: name cpu or cuda for the {args.executor} jobs (this machine's devices "
                                   f"do not tell theirs)")
    spec = StudySpec([dataset_name(d) for d in dict.fromkeys(args.d)], args.c, list(dict.fromkeys(args.f)),
                    list(dict.fromkeys(args.tr)), args.p, args.device or resolve_device(None), args.npz,
                    seed=args.seed,
                    trust_checkpoints=args.trust_checkpoint, retrain_other_seeds=args.retrain_other_seeds)
    check_names(spec, Folders.from_environment())
    options = ExecutorOptions.from_arguments(args)
    if args.status:
        print(status_table(spec, options))
    elif args.dry_run:
        print(dry_run(spec))
    elif args.until_decided:
        from nnunet_attention.study.sequential import run_until_decided

        if not run_until_decided(spec, options, args.np, args.max_repeats, args.poll_seconds,
                                 log=lambda line: print(line, flush=True), margins=margins):
            sys.exit(1)
    elif not run_grid(spec, options, args.np, args.poll_seconds, log=lambda line: print(line, flush=True),
                      margins=margins):
        sys.exit(1)


def _train(args):
    import torch
    from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

    from nnunet_attention.devices import cpu_threads, resolve_device
    from nnunet_attention.nnunet_api import require_variables
    from nnunet_attention.model.pairing import run_paired_training

    require_variables("nnUNet_preprocessed", "nnUNet_results", why="training")
    device = resolve_device(args.device)
    workers = get_allowed_n_proc_DA()  # what nnU-Net would use; the paired trainer runs that many, in a fixed order
    os.environ["nnUNet_n_proc_DA"] = "0"  # so that nnU-Net hands its loaders over in this process
    if device == "cpu":
        torch.set_num_threads(cpu_threads())
    else:
        torch.set_num_threads(1)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    run_paired_training(args.dataset, args.configuration, args.fold, args.tr, args.seed, workers, args.p, device,
                        args.npz, args.c, args.val, args.pretrained_weights, args.trust_checkpoint)


def exit_on_sigterm():
    """SIGTERM (kill, timeout, a scheduler) ends this process as Ctrl-C does, by an exception: the demo's runner then
    stops the trainings it started."""
    import signal

    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))


def _demo(args):
    from nnunet_attention.study.demo import run_demo

    exit_on_sigterm()
    try:
        run_demo(args.o, args.i, args.d, args.c, args.device, args.f, args.tr, args.epochs,
                 margins=_margins(args), seed=None if args.unpaired else args.seed,
                 trust_checkpoints=args.trust_checkpoint, retrain_other_seeds=args.retrain_other_seeds)
    except (KeyboardInterrupt, SystemExit) as stop:
        code = 130 if isinstance(stop, KeyboardInterrupt) else stop.code
        if code not in (130, 143):  # not Ctrl-C or SIGTERM (exit_on_sigterm)
            raise
        print(f"nnunet-attention demo: stopped; its finished steps and trainings in {args.o} are kept; resume with: "
              f"nnunet-attention {' '.join(sys.argv[1:])}", file=sys.stderr)
        sys.exit(code)


def _bench(args):
    from nnunet_attention.tools.bench import format_table, run_bench

    results = run_bench(args.p, args.c, args.device, args.repeats, args.amp, args.compile, args.tr, args.json,
                        args.measure or None)
    print(format_table(results))
    if args.json:
        print(f"JSON: {args.json}", file=sys.stderr)


def _maps(args):
    from nnunet_attention.tools.maps import run_maps

    for line in run_maps(args.i, args.o, args.d, args.c, args.tr, args.p, args.f, args.chk, args.levels, args.device,
                         args.step_size, not args.disable_tta, args.npp, not args.no_png, args.trust_checkpoint,
                         not args.disable_progress_bar, overwrite=args.overwrite):
        print(line)


def _retrofit(args):
    from nnunet_attention.tools.retrofit import retrofit_checkpoint

    summary = retrofit_checkpoint(args.i, args.o, args.tr, trust_checkpoint=args.trust_checkpoint,
                                  overwrite=args.overwrite)
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


MARGIN_HELP = (f"equivalence margins METRIC=VALUE in the metric's unit; default {margin_examples()} (docs/compare.md; "
               "the demo's at its studied settings: docs/demo.md)")
FOLDS_HELP = f"folds (default {' '.join(map(str, NNUNET_FOLD_IDS))}, nnU-Net's own; or all)"
DEVICES = ["cpu", "cuda"]
DEVICE_HELP = "default: cuda when this machine has a CUDA GPU, else cpu (grid on SLURM: name it)"
RETRAIN_HELP = ("retrain (and so replace) finished or interrupted folds that were trained unpaired or under another "
                "--seed; without it such folds are an error, and --dry-run lists them")
TRUST_HELP = ("load the checkpoint even if it holds pickled objects beyond what nnU-Net checkpoints contain; this "
              "RUNS CODE FROM THE FILE: only for files whose origin you trust")


def build_parser() -> argparse.ArgumentParser:
    from nnunet_attention.study.synth import DEFAULT_TASK_ID

    parser = _Parser(prog="nnunet-attention",
                     description="Attention-gated U-Nets for nnU-Net v2: tools around the trainers.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("trainers", help="list our nnU-Net trainers (or, with --path, the folder nnU-Net searches)")
    found = p.add_mutually_exclusive_group()
    found.add_argument("--path", action="store_true", help="print only the trainer folder, for nnUNet_extTrainer")
    found.add_argument("--install", action="store_true",
                       help="nnU-Net 2.5-2.7: write a module into nnU-Net's trainer folder that hands it our trainers "
                            "(2.8 and later find them through nnUNet_extTrainer without it)")
    found.add_argument("--remove", action="store_true", help="delete the module --install wrote")
    p.set_defaults(func=_trainers)

    p = sub.add_parser("synth", help="write a synthetic 3D task in the Medical Segmentation Decathlon layout")
    p.add_argument("-o", required=True, help="folder to write TaskNNN_AttentionSynth into")
    p.add_argument("--task-id", type=int, default=DEFAULT_TASK_ID, help=f"task number (default {DEFAULT_TASK_ID})")
    p.add_argument("--cases", type=int, default=24, help="training cases (default 24)")
    p.add_argument("--test-cases", type=int, default=4, help="test cases in imagesTs (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--shape", type=int, nargs=3, default=[24, 64, 64], metavar=("Z", "Y", "X"),
                   help="voxels per case (default 24 64 64)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing task folder of the same name")
    p.set_defaults(func=_synth)

    p = sub.add_parser("splits", help="repeated cross-validation: extend the dataset's splits_final.json by new "
                                      "k-fold partitions of the same cases (nnU-Net's folds 0-4 unchanged)")
    p.add_argument("-d", required=True, help="dataset name or id")
    p.add_argument("--repeats", type=int, required=True, help="k-fold repeats in all (1 = nnU-Net's own folds)")
    p.set_defaults(func=_splits)

    p = sub.add_parser("compare", help="report two trainers side by side from nnUNet_results (Dice, NSD, HD95; "
                                       "one or several datasets)")
    p.add_argument("-d", nargs="+", required=True, help="dataset name(s) or id(s); several give one report")
    p.add_argument("-c", nargs="+", required=True, help="configuration(s), e.g. 3d_fullres")
    p.add_argument("-tr", nargs=2, required=True, metavar=("TRAINER_A", "TRAINER_B"),
                   help="the two trainers; differences are B minus A (e.g. nnUNetTrainer nnUNetTrainerAttention)")
    p.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    p.add_argument("-f", nargs="+", type=fold, default=list(NNUNET_FOLD_IDS), help=FOLDS_HELP)
    p.add_argument("-o", help="output folder (default nnUNet_results/DATASET/nnunet_attention_compare; with "
                              "several datasets nnUNet_results/nnunet_attention_compare)")
    p.add_argument("--nsd-tolerance", nargs="+", type=float, default=[1.0], metavar="MM",
                   help="NSD tolerance in mm: one value, or one per class in dataset.json's order (default 1.0)")
    p.add_argument("-np", type=int, default=_default_processes(),
                   help="processes for the boundary metrics (default: nnU-Net's default_num_processes, %(default)s)")
    p.add_argument("--margin", nargs="+", type=margin, metavar="METRIC=VALUE", help=MARGIN_HELP)
    p.add_argument("--overwrite", action="store_true",
                   help="replace a report in -o made for other trainers, plans, folds or margins")
    p.set_defaults(func=_compare)

    p = sub.add_parser("grid", help="the datasets x configurations x folds x trainers study, locally or on SLURM "
                                    "(submitit), resumable; ends with compare")
    p.add_argument("-d", nargs="+", required=True, help="dataset names or ids (already in nnUNet_raw)")
    p.add_argument("-c", nargs="+", default=["3d_fullres"], help="configurations (default 3d_fullres)")
    p.add_argument("-f", nargs="+", type=fold, default=list(NNUNET_FOLD_IDS), help=FOLDS_HELP)
    p.add_argument("-tr", nargs="+", default=["nnUNetTrainer", "nnUNetTrainerAttention"],
                   help="trainers; the first is the reference of the comparison (default %(default)s)")
    p.add_argument("-p", default="nnUNetPlans", help="plans identifier (default %(default)s)")
    p.add_argument("-device", choices=DEVICES, help=DEVICE_HELP)
    p.add_argument("--npz", action=argparse.BooleanOptionalAction, default=True,
                   help="keep validation softmax for find_best_configuration's ensembles (default on)")
    p.add_argument("--seed", type=int,
                   help="paired trainings: every fold's trainers share this seed's randomness (nnunet-attention train "
                        "--seed; docs/grid.md); default: unpaired nnUNetv2_train")
    p.add_argument("--executor", choices=list(BACKENDS), default="local", help="default local")
    p.add_argument("--max-parallel", type=int, default=0,
                   help="at most this many jobs at once (default: local one per visible GPU or 1; slurm no limit)")
    add_backend_flags(p)
    p.add_argument("--status", action="store_true", help="print the grid's table (state, epoch, log) and exit")
    p.add_argument("--dry-run", action="store_true", help="print what would run and what is done, run nothing")
    p.add_argument("-np", type=int, default=_default_processes(), help="processes for compare's boundary metrics")
    p.add_argument("--poll-seconds", type=float, default=10.0, help="how often job states are checked (default 10)")
    p.add_argument("--until-decided", action="store_true",
                   help="repeated cross-validation round by round (new 5-fold splits of the same cases), judged after "
                        "each round with alpha spending; a dataset x configuration stops once decided (docs/grid.md)")
    p.add_argument("--max-repeats", type=int, default=3,
                   help="with --until-decided: the most rounds, which also sets each look's level (default 3)")
    p.add_argument("--margin", nargs="+", type=margin, metavar="METRIC=VALUE", help=MARGIN_HELP)
    p.add_argument("--retrain-other-seeds", action="store_true", help=RETRAIN_HELP)
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=_grid)

    p = sub.add_parser("train", help="nnUNetv2_train with paired randomness: both trainers of a fold see the same "
                                     "batches and start from the same shared weights (docs/grid.md)")
    p.add_argument("dataset", help="dataset name or id, as for nnUNetv2_train")
    p.add_argument("configuration", help="configuration, e.g. 3d_fullres")
    p.add_argument("fold", type=fold, help="fold (0-4 or all)")
    p.add_argument("-tr", default="nnUNetTrainer", help="trainer, any nnU-Net finds (default %(default)s)")
    p.add_argument("--seed", type=int, required=True,
                   help="the study's seed; with the dataset, configuration and fold it makes the pair's seed")
    p.add_argument("-p", default="nnUNetPlans", help="plans identifier (default %(default)s)")
    p.add_argument("-device", choices=DEVICES, help=DEVICE_HELP)
    p.add_argument("--npz", action="store_true", help="keep the validation softmax (as nnUNetv2_train --npz)")
    p.add_argument("--c", action="store_true", help="continue from the latest checkpoint (as nnUNetv2_train --c)")
    p.add_argument("--val", action="store_true", help="only validate a finished training (as nnUNetv2_train --val)")
    p.add_argument("-pretrained_weights", help="checkpoint to start from (as nnUNetv2_train)")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=_train)

    p = sub.add_parser("demo", help="gated vs ungated end to end through nnU-Net's commands (resumable)")
    p.add_argument("-o", default="nnunet_attention_demo",
                   help="work folder; holds nnU-Net's folders unless nnUNet_raw etc. are set (default %(default)s)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("-i", help="an MSD task folder (e.g. Task04_Hippocampus) instead of the generated task")
    source.add_argument("-d", type=int, help="an nnU-Net dataset id already in nnUNet_raw")
    p.add_argument("-c", help="configuration (default 2d: see docs/demo.md)")
    p.add_argument("-device", choices=DEVICES, help=DEVICE_HELP)
    p.add_argument("-f", nargs="+", type=fold, help="folds to train (default 0 1 2 3 4)")
    p.add_argument("-tr", "--trainers", nargs=2, metavar=("UNGATED", "GATED"),
                   help="trainer pair (default: the demo's on cpu, else nnUNetTrainer nnUNetTrainerAttention)")
    p.add_argument("--epochs", type=int,
                   help="nnU-Net schedule length: each trainer's version on it, e.g. nnUNetTrainer_50epochs and "
                        "nnUNetTrainerAttentionAllSkips_50epochs for -tr nnUNetTrainer nnUNetTrainerAttentionAllSkips "
                        "(default on cpu: the demo's own short trainers, docs/demo.md; on cuda 100; 1000 = "
                        "nnU-Net's full schedule)")
    pairing = p.add_mutually_exclusive_group()
    pairing.add_argument("--seed", type=int, default=0,
                         help="paired trainings with this study seed (default %(default)s: docs/grid.md)")
    pairing.add_argument("--unpaired", action="store_true",
                         help="train with nnUNetv2_train as is: each training its own randomness")
    p.add_argument("--margin", nargs="+", type=margin, metavar="METRIC=VALUE", help=MARGIN_HELP)
    p.add_argument("--retrain-other-seeds", action="store_true", help=RETRAIN_HELP)
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=_demo)

    p = sub.add_parser("bench", help="gated/ungated cost ratios: parameters, train step, memory, inference")
    p.add_argument("-p", "--plans", help="an nnUNetPlans.json file (bench needs no dataset; default: built-in plans "
                                         "shaped like real MSD plans)")
    p.add_argument("-c", nargs="+", help="configurations of -p (default: all but the cascade), or of the "
                                           "built-in plans")
    p.add_argument("-device", choices=DEVICES, help=DEVICE_HELP)
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions per variant (default 5)")
    p.add_argument("--amp", choices=["fp16", "bf16"], help="autocast dtype for the train step (cuda)")
    p.add_argument("--compile", action="store_true", help="torch.compile both networks")
    p.add_argument("-tr", default="nnUNetTrainerAttention",
                   help="gated trainer whose network is measured (default %(default)s)")
    p.add_argument("--measure", nargs="+", metavar="WHAT",
                   help="what to measure (default: all): activations (memory kept for backward), kernels (per "
                        "forward and backward, profiler), train (step time, CUDA peak memory), inference")
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
    p.add_argument("-f", nargs="+", type=fold, default=list(NNUNET_FOLD_IDS), help=FOLDS_HELP)
    p.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint name (default %(default)s)")
    p.add_argument("--levels", nargs="+", type=int, help="gated levels to export, 0 = finest (default: all)")
    p.add_argument("-device", choices=DEVICES, help=DEVICE_HELP)
    p.add_argument("--disable_tta", action="store_true", help="no mirroring (test-time augmentation)")
    p.add_argument("-step_size", type=float, default=0.5, help="sliding-window step (default 0.5)")
    p.add_argument("-npp", type=int, default=2, help="preprocessing processes (default 2)")
    p.add_argument("--no_png", action="store_true", help="skip the PNG overviews")
    p.add_argument("--disable_progress_bar", action="store_true")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.add_argument("--overwrite", action="store_true",
                   help="replace files of the same names already in -o (without it, such files are refused)")
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


STUDY_COMMANDS = ("compare", "grid", "demo", "synth", "splits")
STUDY_EXTRA = "study"


def require_study_extra(command: str):
    """The study commands need the packages of the [study] extra (pyproject.toml, read from the installed metadata):
    without them one line that names the install, before any work."""
    import importlib.metadata
    import importlib.util
    import re

    try:
        requirements = importlib.metadata.requires("nnunet-attention") or []
    except importlib.metadata.PackageNotFoundError:
        raise NnUNetAttentionError("nnunet-attention is not installed: pip install -e \".[study]\" in its "
                                   "checkout") from None
    marker = f"extra == '{STUDY_EXTRA}'"
    packages = [re.split(r"[<>=!~;\[ ]", r.strip())[0] for r in requirements if marker in r.replace('"', "'")]
    missing = [p for p in packages if importlib.util.find_spec(p.replace("-", "_").lower()) is None]
    if missing:
        raise NnUNetAttentionError(f"{command} is a study command and needs {', '.join(missing)}: pip install "
                                   f"\"nnunet-attention[{STUDY_EXTRA}]\" (or pip install -e \".[{STUDY_EXTRA}]\" "
                                   f"in a checkout)")


def main(argv=None):
    # libraries' deprecation notices (torch.jit, timm) would bury our one-line messages
    warnings.filterwarnings("ignore", category=FutureWarning)
    from nnunet_attention.nnunet_api import check_export_workers

    try:
        check_export_workers()  # the parser's defaults read nnU-Net's configuration, which converts it
    except NnUNetAttentionError as e:
        print(f"nnunet-attention: error: {e}", file=sys.stderr)
        sys.exit(2)
    args = build_parser().parse_args(argv)
    try:
        if args.command in STUDY_COMMANDS:
            require_study_extra(args.command)
        args.func(args)
    except NnUNetAttentionError as e:
        print(f"nnunet-attention {args.command}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"nnunet-attention {args.command}: stopped (Ctrl-C) before it finished; run the same command again to "
              f"finish", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
