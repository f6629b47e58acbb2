#!/usr/bin/env python3
"""lockstep vs PyTorch side by side (issue 14): alternating runs of lockstep-bench-models and
../shared/peers/torch_bench.py on the same device, batch and threads, and the median of the
per-pair speed ratios (torch step ms / lockstep step ms; > 1: lockstep is faster).

  bench/vs_torch.py --bench build/bench/lockstep-bench-models [--device cpu] [--batch 1024]
                    [--pairs 3] [--iters 10] [--torch-python /usr/bin/python3] [--compile]
                    [--batches-on-device]

torch_bench.py keeps 8 batches on the device; lockstep-bench-models stages every step's batch
(host layout and copy) unless --batches-on-device, which stages 8 before the timing too.

Timings on shared machines drift by tens of percent within minutes; only ratios taken side by
side compare (../shared/peers/README.md).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

WORKLOADS = {"din": "din-bench", "bst": "bst-bench", "dual": "dual-bench"}


def lockstep_ms(args):
    cmd = [args.bench, "--device", args.device, "--batch", str(args.batch), "--iters",
           str(args.iters), "--models", ",".join(args.workloads)]
    if args.batches_on_device:
        cmd.append("--batches-on-device")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    ms = {}
    for w, case in WORKLOADS.items():
        m = re.search(rf"^{case} step \(fwd\+bwd\+update\)\s+([0-9.]+)", out, re.M)
        if m:
            ms[w] = float(m.group(1))
    return ms


def torch_ms(args):
    cmd = [args.torch_python, args.torch_bench, "--workload", "all", "--device", args.device,
           "--batch", str(args.batch), "--steps", str(args.iters)]
    if args.device == "cpu":
        cmd += ["--threads", str(args.threads)]
    if args.compile:
        cmd.append("--compile")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    ms = {}
    for line in out.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            ms[r["workload"]] = float(r["step_ms"])
    return ms


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", required=True, help="path to lockstep-bench-models")
    p.add_argument("--torch-bench", default=os.path.join(here, "..", "..", "shared", "peers",
                                                         "torch_bench.py"))
    p.add_argument("--torch-python", default="/usr/bin/python3")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="torch.compile the PyTorch side")
    p.add_argument("--workloads", default="din,bst,dual")
    p.add_argument("--batches-on-device", action="store_true",
                   help="lockstep trains on batches staged before the timing, as torch_bench.py "
                        "does (default: each lockstep step also stages its batch)")
    args = p.parse_args()
    args.workloads = [w for w in args.workloads.split(",") if w]
    ratios = {w: [] for w in args.workloads}
    for i in range(args.pairs):
        a, b = lockstep_ms(args), torch_ms(args)
        for w in args.workloads:
            if w in a and w in b:
                ratios[w].append(b[w] / a[w])
                print(f"pair {i + 1}: {w:5s} lockstep {a[w]:9.3f} ms  torch {b[w]:9.3f} ms  "
                      f"ratio {b[w] / a[w]:.2f}", flush=True)
    print(f"\nmedian of {args.pairs} pair ratios (torch ms / lockstep ms), {args.device}, "
          f"batch {args.batch}{', torch.compile' if args.compile else ''}:")
    for w, r in ratios.items():
        if r:
            print(f"  {w:5s} {statistics.median(r):.2f}x  (pairs: {', '.join(f'{x:.2f}' for x in r)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
