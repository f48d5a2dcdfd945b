"""The ``nnunet-attention`` command. Subcommands import their heavy modules only when they run."""
import argparse
import sys


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
    print(f"\nnnU-Net finds these through nnUNet_extTrainer={_discovery.os.environ.get('nnUNet_extTrainer', '')}",
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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"nnunet-attention {args.command}: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
