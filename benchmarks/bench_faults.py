"""The fault matrix's cost: set-up per case (the TPM state copied from the golden one, swtpm
and the virtual card started) against a bench started with swtpm_setup, and the matrix total.

    python benchmarks/bench_faults.py                       # the whole change-sho matrix
    python benchmarks/bench_faults.py --steps 8-12 --kinds tpm,uicc
    python benchmarks/bench_faults.py --procedure pristine

Goal here: well under a second of set-up per case, the change-sho matrix under 10 minutes.
Tests never assert timings; this prints them (and the matrix totals).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from mcim_hil.bench import load_bench
from mcim_hil.emulated import EmulatedBench
from mcim_hil.faults import run_matrix
from mcim_hil.faults.command import parse_list, parse_steps, table
from mcim_hil.faults.points import KINDS
from mcim_hil.procedures import PROCEDURES


def cold_start_s(bench_path: str | None) -> float:
    """What a case would cost without the golden state: a bench up with swtpm_setup."""
    bench = load_bench(bench_path)
    t0 = time.perf_counter()
    with EmulatedBench(bench):
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TSS2_LOG", "all+NONE")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", default=None)
    parser.add_argument("--procedure", default="change-sho", choices=sorted(PROCEDURES))
    parser.add_argument("--steps")
    parser.add_argument("--kinds")
    args = parser.parse_args(argv)
    cold = cold_start_s(args.bench)
    result = run_matrix(load_bench(args.bench), PROCEDURES[args.procedure], steps=parse_steps(args.steps),
                        kinds=parse_list(args.kinds, KINDS, "kinds") or KINDS,
                        on_case=lambda i, n, c: print(f"{i:3}/{n} set-up {c.setup_s:6.3f} s  run {c.run_s:6.3f} s  "
                                                      f"{c.point.name if c.point else '-'}: {c.summary}", flush=True))
    setups = sorted(c.setup_s for c in result.cases)
    print("\n".join(table(result)))
    print(f"bench start with swtpm_setup (no golden state): {cold:.3f} s")
    print(f"golden TPM state made once: {result.prepare_s:.3f} s")
    if setups:
        print(f"set-up per case: median {statistics.median(setups):.3f} s, min {setups[0]:.3f} s, "
              f"max {setups[-1]:.3f} s over {len(setups)} cases")
    runs = [c.run_s for c in result.cases] or [0.0]
    print(f"procedure + end-state checks per case: median {statistics.median(runs):.3f} s")
    print("totals: " + ", ".join(f"{v} {k}" for k, v in result.totals().items()))
    print(f"matrix total: {result.total_s:.1f} s for {len(result.cases)} cases")
    return 1 if result.unusable else 0


if __name__ == "__main__":
    sys.exit(main())
