"""Times `nnunet-attention maps` against `nnUNetv2_predict` on the same model and input, alternating runs.

Example (after `nnunet-attention demo`, with its nnU-Net folders exported):
    python scripts/time_maps.py -i $nnUNet_raw/Dataset990_AttentionSynth/imagesTs -d 990 -c 3d_fullres \\
        -tr nnUNetTrainerAttention_1epoch -f 0 --repeats 3
Prints the median wall time of each and the ratio maps / predict (target <= 1.15).
"""
import argparse
import statistics
import subprocess
import tempfile
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", required=True)
    parser.add_argument("-d", required=True)
    parser.add_argument("-c", required=True)
    parser.add_argument("-tr", default="nnUNetTrainerAttention")
    parser.add_argument("-f", nargs="+", default=["0"])
    parser.add_argument("-device", default="cpu")
    parser.add_argument("--disable_tta", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    common = ["-i", args.i, "-d", args.d, "-c", args.c, "-tr", args.tr, "-f", *args.f, "-device", args.device,
              *(["--disable_tta"] if args.disable_tta else [])]
    commands = {"nnUNetv2_predict": ["nnUNetv2_predict", *common, "-npp", "2", "-nps", "2"],
                "nnunet-attention maps": ["nnunet-attention", "maps", *common, "-npp", "2"]}
    times = {name: [] for name in commands}
    for r in range(args.repeats):
        for name in (list(commands) if r % 2 == 0 else list(commands)[::-1]):
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                subprocess.run([*commands[name], "-o", out], check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
            print(f"run {r + 1}: {name} {times[name][-1]:.1f} s", flush=True)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name}: median {median:.1f} s")
    print(f"ratio maps / predict: {medians['nnunet-attention maps'] / medians['nnUNetv2_predict']:.3f}")


if __name__ == "__main__":
    main()
