"""Bench start-up and initial provisioning on the emulated bench.

Prints: the emulated bench from start to ready (swtpm with a fresh EK certificate, the virtual
card on vpcd, the modem on its pty; goal 1.5 s or less), and the initial provisioning procedure
(seed 000, 21 steps + the attach with the MCIM) with the bench already up and the M2ME already
manufactured (goal 1 s or less), with the share of that time spent in device I/O (TPM, APDU,
AT commands, from the record's device events) against harness code.

    .venv/bin/python benchmarks/bench_provisioning.py [-n 5] [--air relayed|module]
"""

from __future__ import annotations

import argparse
import statistics
import time

from mcim_hil.bench import load_bench
from mcim_hil.emulated import EmulatedBench
from mcim_hil.procedures import PROCEDURES, run_procedure
from mcim_hil.record import Record
from mcim_hil.session import Session, SessionOptions


def bench_startup(n: int) -> list[float]:
    bench = load_bench(None)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        emulated = EmulatedBench(bench)
        emulated.start()
        times.append(time.perf_counter() - t0)
        emulated.stop()
    return times


def device_time(record: Record) -> dict[str, float]:
    per: dict[str, float] = {"tpm": 0.0, "uicc": 0.0, "modem": 0.0}
    for step in record.steps:
        for event in step.events:
            if event["type"] == "device":
                per[event["device"]] = per.get(event["device"], 0.0) + (event["duration_s"] or 0.0)
    return per


def bench_procedure(n: int, air: str, name: str) -> list[tuple[float, dict[str, float]]]:
    bench = load_bench(None)
    out = []
    for _ in range(n):
        record = Record()
        with Session(bench, SessionOptions(air=air), record) as session:
            t0 = time.perf_counter()
            outcome = run_procedure(PROCEDURES[name], session, record)
            elapsed = time.perf_counter() - t0
        if not outcome.passed:
            raise SystemExit(f"{name} failed at step {outcome.failed_step.number}: {outcome.failed_step.detail}")
        out.append((elapsed, device_time(record)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--air", choices=["relayed", "module"], default="module")
    parser.add_argument("--procedure", choices=sorted(PROCEDURES), default="initial")
    args = parser.parse_args()

    start = bench_startup(args.n)
    print(f"emulated bench start to ready: median {statistics.median(start) * 1000:.0f} ms, "
          f"max {max(start) * 1000:.0f} ms over {args.n} (goal <= 1500 ms)")

    runs = bench_procedure(args.n, args.air, args.procedure)
    totals = [t for t, _ in runs]
    median = statistics.median(totals)
    mid = runs[totals.index(sorted(totals)[len(totals) // 2])][1]
    io = sum(mid.values())
    total_mid = sorted(totals)[len(totals) // 2]
    print(f"{args.procedure} provisioning ({args.air} attach), bench up: median {median * 1000:.0f} ms, "
          f"max {max(totals) * 1000:.0f} ms over {args.n} (goal <= 1000 ms)")
    print(f"  device I/O {io * 1000:.1f} ms = {io / total_mid:.0%} of the run "
          f"(TPM {mid['tpm'] * 1000:.1f} ms, APDU {mid['uicc'] * 1000:.1f} ms, AT {mid['modem'] * 1000:.1f} ms); "
          f"harness code and network {(total_mid - io) * 1000:.1f} ms = {1 - io / total_mid:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
