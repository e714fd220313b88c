"""Quote time through the TPM driver: TPM2_Quote + the PCR_Read of the same PCRs, n times.

    python benchmarks/bench_tpm.py                                   # against a fresh swtpm
    python benchmarks/bench_tpm.py swtpm:host=127.0.0.1,port=2321    # or any TCTI (device:/dev/tpmrm0...)
    python benchmarks/bench_tpm.py [TCTI] -n 100                     # number of quotes (default 50)

Goal on swtpm: <= 2 ms per quote (median). Tests never assert timings; this prints them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from mcim_hil.drivers.tpm import Tpm

QUOTED_PCRS: Sequence[int] = tuple(range(8))  # a boot's measured PCRs: one PCR_Read


def _figures(samples: list[float]) -> dict:
    samples = sorted(samples)
    n = len(samples)
    return {
        "n": n,
        "median_ms": statistics.median(samples),
        "p90_ms": samples[min(n - 1, int(0.9 * n))],
        "min_ms": samples[0],
        "max_ms": samples[-1],
    }


def _time(n: int, operation: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        operation()
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def bench_quote(tcti: str, n: int = 50, pcrs: Sequence[int] = QUOTED_PCRS) -> dict:
    """Time ``n`` driver quotes (TPM2_Quote + TPM2_PCR_Read) by a fresh AK, in milliseconds.

    Also times a bare pcr_read of the same PCRs, to show what the quote's share is.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    with Tpm.open(tcti) as tpm:
        ak = tpm.create_ak()
        try:
            for _ in range(3):
                tpm.quote(ak, os.urandom(32), pcrs)
            quote = _figures(_time(n, lambda: tpm.quote(ak, os.urandom(32), pcrs)))
            pcr_read = _figures(_time(n, lambda: tpm.pcr_read(pcrs)))
        finally:
            tpm.flush(ak)
    return {"tcti": tcti, "pcrs": list(pcrs), **quote,
            "pcr_read_median_ms": pcr_read["median_ms"], "pcr_read_p90_ms": pcr_read["p90_ms"]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Median and p90 of TPM quotes through the driver.")
    parser.add_argument("tcti", nargs="?", help="TCTI of the TPM; default: a fresh swtpm")
    parser.add_argument("-n", type=int, default=50, help="number of timed quotes (default 50)")
    args = parser.parse_args(argv[1:])
    n = args.n
    if args.tcti:
        result = bench_quote(args.tcti, n)
    else:
        from mcim_hil.emulators.swtpm import Swtpm
        with Swtpm() as swtpm:
            result = bench_quote(swtpm.tcti, n)
    print(f"quote of PCRs {result['pcrs']} on {result['tcti']} (n={result['n']}): "
          f"median {result['median_ms']:.3f} ms, p90 {result['p90_ms']:.3f} ms "
          f"(min {result['min_ms']:.3f}, max {result['max_ms']:.3f}); "
          f"of which PCR_Read alone: median {result['pcr_read_median_ms']:.3f} ms, "
          f"p90 {result['pcr_read_p90_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
