"""AT round-trip time through the modem driver: `AT` -> `OK`, n times; prints median and p90.

    python benchmarks/bench_at.py                 # against an emulated modem on a pty
    python benchmarks/bench_at.py /dev/ttyUSB2    # or any pyserial URL (socket://, rfc2217://...)

Goal on the emulated modem: <= 1 ms per round trip. Tests never assert timings; this prints them.
"""

from __future__ import annotations

import statistics
import sys
import time

from mcim_hil.drivers.modem import Modem


def bench_at(port_url: str, n: int = 200) -> dict:
    """Time ``n`` plain ``AT`` commands on ``port_url`` (after a few warm-up ones), in milliseconds."""
    if n < 1:
        raise ValueError("n must be at least 1")
    with Modem.open(port_url) as modem:
        for _ in range(5):
            modem.at()
        modem.echo_off()
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            modem.at()
            samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return {
        "port": port_url,
        "n": n,
        "median_ms": statistics.median(samples),
        "p90_ms": samples[min(n - 1, int(0.9 * n))],
        "min_ms": samples[0],
        "max_ms": samples[-1],
    }


def main(argv: list[str]) -> int:
    n = int(argv[2]) if len(argv) > 2 else 200
    if len(argv) > 1:
        result = bench_at(argv[1], n)
    else:
        from mcim_hil.emulators.modem import EmulatedModem
        # Plain AT never touches the SIM, so the reader need not hold a card.
        with EmulatedModem("mcim-hil vPCD B 00 01") as emu:
            result = bench_at(emu.port, n)
    print(f"AT round trip on {result['port']} (n={result['n']}): median {result['median_ms']:.3f} ms, "
          f"p90 {result['p90_ms']:.3f} ms (min {result['min_ms']:.3f}, max {result['max_ms']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
