"""Runs the gated networks under autocast (fp16/bf16) and torch.compile and reports graph breaks in the gates.

    python scripts/check_compile_amp.py --device cuda     # on a GPU: fp16 + bf16 autocast, compile, ratios
    python scripts/check_compile_amp.py --device cpu      # bf16 autocast and compile on the CPU

For each built-in plan it prints: Dynamo graph count and break reasons for the gated network (a gate adds no
break when the gated and ungated counts are equal), whether a compiled train step runs under each autocast dtype,
and the gated/ungated time ratio of that compiled step.
"""
import argparse
import time

import torch
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from nnunet_attention.bench import TrainStep, bench_patch, paired_trainer_parts
from nnunet_attention.reference_plans import reference_configurations


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("-c", nargs="+", default=["hippocampus_3d_fullres", "pancreas_3d_fullres"])
    args = parser.parse_args()
    if args.device == "cuda":
        print(f"device: {torch.cuda.get_device_name()}")
    dtypes = ["fp16", "bf16"] if args.device == "cuda" else ["bf16"]
    for name in args.c:
        cm = ConfigurationManager(reference_configurations()[name])
        patch, batch, _ = bench_patch(cm, args.device)
        parts = paired_trainer_parts(reference_configurations()[name], "nnUNetTrainerAttention", args.device)
        x = torch.randn(batch, 1, *patch, device=args.device)
        for variant, (network, _, _) in parts.items():
            network.to(args.device)
            explanation = torch._dynamo.explain(network)(x)
            reasons = sorted({str(b.reason).splitlines()[0] for b in explanation.break_reasons})
            print(f"{name} {variant}: {explanation.graph_count} graph(s), {explanation.graph_break_count} break(s) "
                  f"{reasons}")
            torch._dynamo.reset()
        for amp in dtypes:
            times = {}
            for variant, variant_parts in parts.items():
                step = TrainStep(variant_parts, patch, batch, args.device, amp, compile_network=True)
                step()
                start = time.perf_counter()
                for _ in range(args.repeats):
                    step()
                times[variant] = (time.perf_counter() - start) / args.repeats
            print(f"{name} compiled train step, autocast {amp}: ok; gated/ungated time "
                  f"{times['gated'] / times['ungated']:.3f}")


if __name__ == "__main__":
    main()
