"""The ``nnunet-attention`` command. Subcommands import their heavy modules only when they run."""
import argparse
import os
import sys
import warnings


class UserError(Exception):
    """A problem the user can fix; printed as one line, no traceback."""


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

    try:
        task = write_msd_task(args.o, args.task_id, args.cases, args.test_cases, args.seed, progress=progress)
    except ValueError as e:
        raise UserError(str(e)) from None
    print(task)


def _dataset_results(dataset: str) -> str:
    from nnunetv2.paths import nnUNet_results
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    if not nnUNet_results.is_set():
        raise UserError("nnUNet_results is not set; export it as for nnU-Net (documentation/setting_up_paths.md)")
    try:
        name = maybe_convert_to_dataset_name(dataset)
    except RuntimeError as e:
        raise UserError(str(e).splitlines()[0]) from None
    return os.path.join(nnUNet_results.get(), name)


def _compare(args):
    from nnunet_attention.compare import IncompleteResults, compare

    results = _dataset_results(args.d)
    output = args.o or os.path.join(results, "nnunet_attention_compare")
    try:
        report = compare(results, args.c, args.tr, args.p, args.f, output)
    except (IncompleteResults, ValueError) as e:
        raise UserError(str(e)) from None
    for missing in report["missing"]:
        print(f"missing: {missing}", file=sys.stderr)
    if report["missing"]:
        print("the report is incomplete: it covers the results that exist", file=sys.stderr)
    print(os.path.join(output, "report.md"))


def _demo(args):
    from nnunet_attention.demo import DemoError, run_demo

    try:
        run_demo(args.o, args.i, args.d, args.c, args.device, args.f, args.trainers, args.epochs)
    except DemoError as e:
        raise UserError(str(e)) from None


def _bench(args):
    import json

    from nnunet_attention.bench import bench_configuration, format_table, load_configurations

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    from nnunet_attention import trainers

    if not isinstance(getattr(trainers, args.tr, None), type) or not issubclass(getattr(trainers, args.tr),
                                                                                trainers.nnUNetTrainerAttention):
        raise UserError(f"-tr {args.tr} is not one of our gated trainers; see nnunet-attention trainers")
    if args.plans and not os.path.isfile(args.plans):
        raise UserError(f"plans file not found: {args.plans}")
    try:
        configurations = load_configurations(args.plans, args.c)
    except KeyError as e:
        raise UserError(f"configuration {e} is not in {args.plans}") from None
    results = []
    for i, (name, configuration) in enumerate(configurations.items(), start=1):
        print(f"[{i}/{len(configurations)}] {name}", file=sys.stderr, flush=True)
        results.append(bench_configuration(name, configuration, args.device, args.repeats, args.amp, args.compile,
                                           gated_trainer=args.tr))
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results}, f, indent=2)
        print(f"JSON: {args.json}", file=sys.stderr)


def _folds(values):
    return [v if v == "all" else int(v) for v in values]


def _maps(args):
    import torch
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    from nnunet_attention.maps import AttentionMapPredictor, MapsError

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("-device cuda asked for, but torch sees no CUDA device; use -device cpu")
    if not os.path.isdir(args.i):
        raise UserError(f"input folder not found: {args.i}")
    _dataset_results(args.d)
    model_folder = get_output_folder(args.d, args.tr, args.p, args.c)
    if not os.path.isdir(model_folder):
        raise UserError(f"no trained model at {model_folder}; check -d, -c, -tr and -p")
    predictor = AttentionMapPredictor(tile_step_size=args.step_size, use_gaussian=True,
                                      use_mirroring=not args.disable_tta,
                                      perform_everything_on_device=device == "cuda", device=torch.device(device),
                                      allow_tqdm=not args.disable_progress_bar)
    try:
        predictor.initialize_for_maps(model_folder, _folds(args.f), args.chk, args.levels)
        cases = predictor.predict_maps_from_folder(args.i, args.o, args.npp, write_png=not args.no_png)
    except FileNotFoundError as e:
        raise UserError(f"not found: {e.filename or e} (train that fold first, or pick -f / -chk)") from None
    except MapsError as e:
        raise UserError(str(e)) from None
    print(f"{len(cases)} case(s): segmentations and attention maps in {args.o}")


def _retrofit(args):
    from nnunet_attention.checkpoint import NotACheckpointError
    from nnunet_attention.networks import UnsupportedArchitectureError
    from nnunet_attention.retrofit import RetrofitError, retrofit_checkpoint

    if not os.path.isfile(args.i):
        raise UserError(f"checkpoint not found: {args.i}")
    if os.path.dirname(os.path.abspath(args.o)) and not os.path.isdir(os.path.dirname(os.path.abspath(args.o))):
        raise UserError(f"output folder does not exist: {os.path.dirname(os.path.abspath(args.o))}")
    try:
        summary = retrofit_checkpoint(args.i, args.o, args.tr)
    except (NotACheckpointError, RetrofitError, UnsupportedArchitectureError) as e:
        raise UserError(str(e)) from None
    print(f"{args.o}: {summary['copied_tensors']} tensors copied, {summary['gates']} identity gates "
          f"({summary['configuration']}). Train with: nnUNetv2_train DATASET {summary['configuration']} FOLD "
          f"-tr {summary['trainer']} -pretrained_weights {args.o}")


def build_parser() -> argparse.ArgumentParser:
    from nnunet_attention.synth import DEFAULT_TASK_ID

    parser = argparse.ArgumentParser(prog="nnunet-attention",
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
    p.set_defaults(func=_synth)

    p = sub.add_parser("compare", help="report two trainers side by side from nnUNet_results")
    p.add_argument("-d", required=True, help="dataset name or id")
    p.add_argument("-c", nargs="+", required=True, help="configuration(s), e.g. 3d_fullres")
    p.add_argument("-tr", nargs=2, required=True, metavar=("TRAINER_A", "TRAINER_B"),
                   help="the two trainers; differences are B minus A (e.g. nnUNetTrainer nnUNetTrainerAttention)")
    p.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    p.add_argument("-f", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="folds (default 0 1 2 3 4)")
    p.add_argument("-o", help="output folder (default nnUNet_results/DATASET/nnunet_attention_compare)")
    p.set_defaults(func=_compare)

    p = sub.add_parser("demo", help="gated vs ungated end to end through nnU-Net's commands (resumable)")
    p.add_argument("-o", default="nnunet_attention_demo",
                   help="work folder; holds nnU-Net's folders unless nnUNet_raw etc. are set (default %(default)s)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("-i", help="an MSD task folder (e.g. Task04_Hippocampus) instead of the generated task")
    source.add_argument("-d", type=int, help="an nnU-Net dataset id already in nnUNet_raw")
    p.add_argument("-c", default="3d_fullres", help="configuration (default 3d_fullres)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    p.add_argument("-f", nargs="+", type=int, default=[0], help="folds to train (default 0)")
    p.add_argument("--trainers", nargs=2, metavar=("UNGATED", "GATED"), help="trainer pair (default: by --epochs)")
    p.add_argument("--epochs", type=int,
                   help="nnU-Net schedule length; picks nnUNetTrainer_Nepochs and nnUNetTrainerAttention_Nepochs "
                        "(default 1 on cpu, 100 on cuda; 1000 = nnU-Net's full schedule)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("bench", help="gated/ungated cost ratios: parameters, train step, memory, inference")
    p.add_argument("--plans", help="an nnUNetPlans.json (default: built-in plans shaped like real MSD plans)")
    p.add_argument("-c", nargs="+", help="configurations of --plans (default: all but the cascade)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="default cpu")
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
    p.set_defaults(func=_maps)

    p = sub.add_parser("retrofit", help="turn an ungated nnU-Net checkpoint into gated pretrained weights that "
                                        "compute exactly what it computes")
    p.add_argument("-i", required=True, help="ungated checkpoint, e.g. .../fold_0/checkpoint_final.pth")
    p.add_argument("-o", required=True, help="output .pth for nnUNetv2_train -pretrained_weights")
    p.add_argument("-tr", default="nnUNetTrainerAttention", help="gated trainer to build for (default %(default)s)")
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
