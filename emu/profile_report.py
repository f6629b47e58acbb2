#!/usr/bin/env python3
"""The CUDA emulator's memory-access profile (emu/src/profile.cpp) as tables and an estimate.

    LOCKSTEP_EMU_RACECHECK=off LOCKSTEP_EMU_PROFILE=/tmp/din.tsv \\
        build-race/bench/lockstep-bench-models --device cuda --models din --batch 4096 --iters 1
    emu/profile_report.py /tmp/din.tsv --steps 4

Needs a build whose kernels are instrumented (LOCKSTEP_CUDA_EMULATION=ON
LOCKSTEP_EMU_RACECHECK=ON). Prints, per kernel and per library call, what one step moves and
an estimate of its device time on a GPU described by the options (H200 SXM by default), then
the places in the code whose warp instructions touch the most sectors (or shared-memory
wavefronts) beyond what their bytes need. The estimate is a roofline: each launch costs the
largest of a floor (launch and drain), its distinct sectors at DRAM bandwidth, all its sectors
at L2 bandwidth, all its sectors at the rate its warps can keep in flight (Little's law), its
shared-memory wavefronts, and a GEMM's FLOPs at the stated rate. It says nothing about
instruction throughput, occupancy limits or overlap between kernels: a lower bound to measure
against, not a measurement.
"""

import argparse
import collections
import re
import signal
import sys


def parse(path):
    launches, ops, lines = [], [], []
    with open(path) as f:
        for raw in f:
            if raw.startswith("#"):
                continue
            p = raw.rstrip("\n").split("\t")
            if p[0] == "launch":
                launches.append((p[1], *map(int, p[2:])))
            elif p[0] == "op":
                ops.append((p[1], float(p[2]), float(p[3]), p[4]))
            elif p[0] == "line":
                lines.append((p[1], p[2], p[3], p[4], *map(int, p[5:])))
    return launches, ops, lines


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # (| head)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile")
    ap.add_argument("--steps", type=float, default=1, help="steps the profiled run made (divides)")
    ap.add_argument("--dram-gbs", type=float, default=4000, help="DRAM bandwidth reached (H200: 4.8 TB/s peak)")
    ap.add_argument("--l2-gbs", type=float, default=7000, help="L2 to SM bandwidth")
    ap.add_argument("--sms", type=int, default=132)
    ap.add_argument("--clock-ghz", type=float, default=1.98)
    ap.add_argument("--gemm-tflops", type=float, default=50, help="FP32 GEMM rate (H200: 67 peak); 400 for TF32")
    ap.add_argument("--pcie-gbs", type=float, default=50, help="pinned host-device copies")
    ap.add_argument("--kernel-us", type=float, default=2.0, help="floor per launch (launch + drain)")
    ap.add_argument("--latency-ns", type=float, default=800, help="DRAM latency, for Little's law")
    ap.add_argument("--inflight-bytes", type=float, default=512, help="bytes a warp keeps in flight")
    ap.add_argument("--top", type=int, default=15, help="places to list")
    ap.add_argument("--exclude", default="", help="kernels and calls to leave out (a regular expression)")
    a = ap.parse_args()
    launches, ops, lines = parse(a.profile)
    if a.exclude:
        skip = re.compile(a.exclude)
        launches = [l for l in launches if not skip.search(l[0])]
        ops = [o for o in ops if not skip.search(o[0])]
        lines = [l for l in lines if not skip.search(l[0])]
    if not launches and not ops:
        sys.exit(f"{a.profile}: nothing was profiled")
    if launches and not any(l[4] or l[9] for l in launches):
        print(f"{a.profile}: the kernels made no memory accesses the profile saw: a build without "
              "LOCKSTEP_EMU_RACECHECK=ON does not instrument them (only launches and library calls "
              "are counted)", file=sys.stderr)

    def launch_us(blocks, threads, sectors, dram, wavefronts):
        warps = blocks * ((threads + 31) // 32)
        l2 = sectors * 32
        terms = {
            "floor": a.kernel_us,
            "dram": dram * 32 / (a.dram_gbs * 1e3),
            "l2": l2 / (a.l2_gbs * 1e3),
            "inflight": l2 / (warps * a.inflight_bytes / a.latency_ns) / 1e3 if warps else 0,
            "smem": wavefronts / (a.sms * a.clock_ghz * 1e3),
        }
        bound = max(terms, key=terms.get)
        return terms[bound], bound

    per = collections.OrderedDict()

    def add(name, us, bound, **kw):
        r = per.setdefault(name, collections.Counter())
        r["calls"] += 1
        r["us"] += us
        r["bound:" + bound] += us
        for k, v in kw.items():
            r[k] += v

    for (kernel, blocks, threads, requests, sectors, ideal, dread, dwrite, sreq, wave, iwave,
         atomics, serial) in launches:
        us, bound = launch_us(blocks, threads, sectors, dread + dwrite, wave)
        add(kernel, us, bound, requests=requests, sectors=sectors, ideal=ideal,
            dram=(dread + dwrite) * 32, wave=wave, iwave=iwave, warps=blocks * ((threads + 31) // 32))
    for what, nbytes, flops, transfer in ops:
        if transfer in "hD":
            us, bound = max(a.kernel_us, nbytes / (a.pcie_gbs * 1e3)), "pcie"
            what += " H2D" if transfer == "h" else " D2H"
        else:
            t = {"floor": a.kernel_us, "dram": nbytes / (a.dram_gbs * 1e3),
                 "flops": flops / (a.gemm_tflops * 1e6)}
            bound = max(t, key=t.get)
            us = t[bound]
        add(what, us, bound, dram=nbytes, flops=flops)

    s = a.steps
    total = sum(r["us"] for r in per.values()) / s
    calls = sum(r["calls"] for r in per.values()) / s
    print(f"Estimated device time per step: {total / 1e3:.3f} ms over {calls:.0f} launches and library calls "
          f"(DRAM {a.dram_gbs:.0f} GB/s, L2 {a.l2_gbs:.0f} GB/s, GEMM {a.gemm_tflops:.0f} TFLOP/s, "
          f"floor {a.kernel_us} us per launch)\n")
    print("| kernel or call | calls/step | est. µs/step | share | bound by | MB moved (DRAM) | sectors/request (ideal) | smem wavefronts (ideal) |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for name, r in sorted(per.items(), key=lambda kv: -kv[1]["us"]):
        bounds = {k[6:]: v for k, v in r.items() if k.startswith("bound:")}
        bound = max(bounds, key=bounds.get)
        spr = f"{r['sectors'] / r['requests']:.2f} ({r['ideal'] / r['requests']:.2f})" if r["requests"] else ""
        smem = f"{r['wave'] / s:.0f} ({r['iwave'] / s:.0f})" if r["wave"] else ""
        print(f"| {name} | {r['calls'] / s:.1f} | {r['us'] / s:.1f} | {100 * r['us'] / s / total:.1f}% | {bound} "
              f"| {r['dram'] / s / 1e6:.2f} | {spr} | {smem} |")

    print(f"\nPlaces whose warp instructions cost the most beyond their bytes (per step; units: 32-byte "
          f"sectors, or wavefronts in shared memory):\n")
    print("| kernel | place | access | requests | lanes/request | units/request | ideal/request | excess units |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    rows = []
    for kernel, place, kind, space, requests, lanes, units, ideal, used, serial in lines:
        kind = {"r": "load", "w": "store", "a": "atomic"}[kind]
        rows.append(((units - ideal) / s, kernel, place, f"{space} {kind}", requests / s, lanes / requests,
                     units / requests, ideal / requests))
    for excess, kernel, place, kind, requests, lpr, upr, ipr in sorted(rows, reverse=True)[: a.top]:
        if excess <= 0:
            break
        print(f"| {kernel} | {place.split('/kernels/')[-1]} | {kind} | {requests:.0f} | {lpr:.1f} | {upr:.2f} | {ipr:.2f} | {excess:.0f} |")


if __name__ == "__main__":
    main()
