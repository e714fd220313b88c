"""APDU round-trip time through pcscd (+ vpcd and the virtual UICC, or a real reader).

    python benchmarks/bench_apdu.py --reader "Virtual PCD 00 00" --n 200
    python benchmarks/bench_apdu.py --port 35963            # starts a virtual card first

Times SELECT MF (no response data) and STATUS (no response data), each a single round
trip under T=0. Goal on the emulated stack: median <= 0.5 ms (facts/pcsc.md measured
0.28 ms with TCP_NODELAY + TCP_QUICKACK). Figures only; no test asserts timings.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from smartcard.scard import SCARD_PROTOCOL_T0
from smartcard.System import readers

SELECT_MF = [0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00]  # TS 102 221 11.1.1, P2 '0C': no data
STATUS = [0x80, 0xF2, 0x00, 0x0C, 0x00]  # TS 102 221 11.1.2, P2 '0C': no data


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def bench_apdu(reader: str, n: int = 200) -> dict[str, Any]:
    """Median and p90 (ms) of ``n`` SELECT and ``n`` STATUS round trips on ``reader``."""
    match = [r for r in readers() if str(r) == reader]
    if not match:
        raise RuntimeError(f"reader {reader!r} not listed by pcscd")
    conn = match[0].createConnection()
    conn.connect(SCARD_PROTOCOL_T0)
    select_ms: list[float] = []
    status_ms: list[float] = []
    try:
        for _ in range(n):
            for apdu, sink in ((SELECT_MF, select_ms), (STATUS, status_ms)):
                t0 = time.perf_counter()
                _data, sw1, sw2 = conn.transmit(apdu)
                sink.append((time.perf_counter() - t0) * 1000.0)
                if (sw1, sw2) != (0x90, 0x00):
                    raise RuntimeError(f"reader {reader!r}: {bytes(apdu).hex()} answered {sw1:02X}{sw2:02X}")
    finally:
        conn.disconnect()
    both = select_ms + status_ms
    return {
        "reader": reader,
        "n": n,
        "select_median_ms": statistics.median(select_ms),
        "select_p90_ms": _p90(select_ms),
        "status_median_ms": statistics.median(status_ms),
        "status_p90_ms": _p90(status_ms),
        "median_ms": statistics.median(both),
        "p90_ms": _p90(both),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reader", help="PC/SC reader name (default: the slot of --port, else 'Virtual PCD 00 00')")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--port", type=int, help="start a virtual UICC on this vpcd port for the run")
    args = parser.parse_args()

    if args.port is None:
        figures = bench_apdu(args.reader or "Virtual PCD 00 00", args.n)
    else:
        from mcim_hil.emulators.vuicc import VirtualUicc, create_card_file, reader_for_port

        reader = args.reader or reader_for_port(args.port) or "Virtual PCD 00 00"
        with tempfile.TemporaryDirectory() as tmp:
            card = Path(tmp) / "bench-card.json"
            # throwaway test card: fixed dummy keys, never a real subscriber's
            create_card_file(card, iccid="8988211000000000001", imsi="001010000000001",
                             k=bytes(16), opc=bytes(16), adm1=b"11111111")
            with VirtualUicc(card, args.port, reader=reader):
                figures = bench_apdu(reader, args.n)

    print(f"reader {figures['reader']!r}, {figures['n']} x SELECT + {figures['n']} x STATUS")
    print(f"  SELECT  median {figures['select_median_ms']:.3f} ms  p90 {figures['select_p90_ms']:.3f} ms")
    print(f"  STATUS  median {figures['status_median_ms']:.3f} ms  p90 {figures['status_p90_ms']:.3f} ms")
    print(f"  all     median {figures['median_ms']:.3f} ms  p90 {figures['p90_ms']:.3f} ms  (goal <= 0.5 ms)")


if __name__ == "__main__":
    main()
