"""The mcim-hil command line.

    mcim-hil bench check [--bench FILE]   open every device and print what it is
    mcim-hil bench up [--bench FILE]      start the emulated bench and keep it up
    mcim-hil run [--bench FILE] [--procedure initial|initial-ivf|change-sho] [--air module|relayed] [--out DIR]
                                          run a TR 33.812 procedure on the bench, one row per seed step
    mcim-hil fleet --devices N [--real K] [--no-ivf|--ivf-only] [--configurations C] [--tampered T]
                   [--workers W] [--scheduler ADDRESS] [--out DIR]
                                          a mass change of SHO (seed 004), with and without the IVF
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from contextlib import ExitStack
from typing import Callable

from .bench import BenchFileError, SecretUnavailable, bench_path, load_bench
from .emulated import EmulatedBench


def main(argv: list[str] | None = None) -> int:
    # libtss2 logs every failed command to stderr itself; our errors already name the
    # command and response code. An engineer's own TSS2_LOG setting wins.
    os.environ.setdefault("TSS2_LOG", "all+NONE")
    parser = argparse.ArgumentParser(prog="mcim-hil", description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="check or bring up a bench")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    for name, helptext in (("check", "open every device and print one table"),
                           ("up", "start the emulated bench and keep it up until SIGINT/SIGTERM")):
        p = bench_sub.add_parser(name, help=helptext)
        p.add_argument("--bench", metavar="FILE", help="bench file (default: $MCIM_HIL_BENCH or lab_config/emulated.yaml)")
    run = sub.add_parser("run", help="run a TR 33.812 procedure on the bench")
    run.add_argument("--bench", metavar="FILE", help="bench file (default: $MCIM_HIL_BENCH or lab_config/emulated.yaml)")
    run.add_argument("--procedure", default="initial", choices=["initial", "initial-ivf", "change-sho"],
                     help="initial: seed 000 (21 steps); initial-ivf: seed 004 3rd change (14 steps, IVF); "
                          "change-sho: seed 004 4th change (initial-ivf, then 14 steps of the change of SHO)")
    run.add_argument("--air", choices=["module", "relayed"], default=None,
                     help="module: the module attaches by itself (emulated modem); relayed: the harness relays "
                          "the AKA to the card (default: module on an emulated bench, else relayed)")
    run.add_argument("--out", metavar="DIR", help="where run.json goes (default: runs/<procedure>-<time>)")
    _add_fleet(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "bench" and args.bench_command == "check":
            return bench_check(args.bench)
        if args.command == "bench" and args.bench_command == "up":
            return bench_up(args.bench)
        if args.command == "run":
            from .run import run_command
            return run_command(args.bench, args.procedure, args.air, args.out)
        if args.command == "fleet":
            return _fleet(args)
    except BenchFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SecretUnavailable as exc:
        print(f"{bench_path(args.bench)}: {exc}", file=sys.stderr)
        return 2
    parser.error("unknown command")
    return 2


def _add_fleet(sub) -> None:
    fleet = sub.add_parser("fleet", help="a mass change of SHO: N M2MEs (K real benches, the rest simulated "
                                         "TREs), with and without the IVF")
    fleet.add_argument("--devices", type=int, required=True, metavar="N", help="M2MEs in the fleet")
    fleet.add_argument("--real", type=int, default=1, metavar="K",
                       help="of them, real benches running every step with real device commands (default 1)")
    modes = fleet.add_mutually_exclusive_group()
    modes.add_argument("--no-ivf", action="store_true", help="only the run without the IVF")
    modes.add_argument("--ivf-only", action="store_true", help="only the run with the IVF")
    fleet.add_argument("--configurations", type=int, default=1, metavar="C",
                       help="distinct platform configurations (component sets, one model each; default 1)")
    fleet.add_argument("--tampered", type=int, default=0, metavar="T",
                       help="simulated M2MEs whose measurement differs from the IVF's result (default 0)")
    fleet.add_argument("--workers", type=int, default=None, metavar="W",
                       help="shards run in parallel (default: the CPU count)")
    fleet.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the shards on an existing Dask cluster, e.g. tcp://HOST:8786")
    fleet.add_argument("--bench", metavar="FILE", help="bench file of the real benches "
                                                       "(default: $MCIM_HIL_BENCH or lab_config/emulated.yaml)")
    fleet.add_argument("--out", metavar="DIR", help="where fleet.json and fleet.html go (default: runs/fleet-<time>)")


def _fleet(args) -> int:
    from .fleet.command import fleet_command
    from .fleet.population import FleetError
    try:
        return fleet_command(args)
    except FleetError as exc:
        print(f"mcim-hil fleet: {exc}", file=sys.stderr)
        return 2


def bench_up(path: str | None) -> int:
    bench = load_bench(path)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmulatedBench(bench) as endpoints:
        for line in endpoints.lines():
            print(line)
        print(f"# bench {bench.name} up in {endpoints.startup_s:.2f} s; SIGINT or SIGTERM stops it", flush=True)
        stop.wait()
    return 0


def bench_check(path: str | None) -> int:
    from .devices import open_devices
    bench = load_bench(path)
    rows: list[tuple[str, str, str]] = []
    failed: list[str] = []

    def probe(device: str, fn: Callable[[], list[tuple[str, str]]]) -> None:
        try:
            for key, value in fn():
                rows.append((device, key, value))
        except Exception as exc:  # one device failing must not hide the others
            rows.append((device, "FAILED", str(exc)))
            failed.append(device)

    with ExitStack() as stack:
        emulated = stack.enter_context(EmulatedBench(bench))
        for device in bench.devices():
            def one(device: str = device) -> list[tuple[str, str]]:
                devices = open_devices(bench, emulated, stack, only=(device,))
                return _describe(device, devices, emulated)
            probe(device, one)
    _print_table(bench.name, rows)
    if failed:
        print(f"bench check failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _describe(device: str, devices, endpoints) -> list[tuple[str, str]]:
    if device == "tpm":
        tpm = devices.tpm
        info = tpm.info()
        ek = tpm.ek()
        return [("tcti", tpm.tcti), ("manufacturer", f"{info.manufacturer} ({info.vendor})"),
                ("firmware", f"{info.firmware_version_text} (0x{info.firmware_version:016x}), "
                             f"TPM 2.0 rev {info.spec_revision / 100:.2f}"),
                ("EK", "present, " + ("certificate in NV" if ek.certificate is not None else "no certificate"))]
    if device == "uicc":
        uicc = devices.uicc
        return [("reader", uicc.transport.name), ("ATR", uicc.atr.hex()),
                ("ICCID", uicc.read_iccid()), ("IMSI", uicc.read_imsi())]
    ident = devices.modem.identity()
    return [("port", devices.modem.port), ("manufacturer", ident.manufacturer), ("model", ident.model),
            ("revision", ident.revision), ("IMEI", ident.imei)]


def _print_table(name: str, rows: list[tuple[str, str, str]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(("DEVICE", "PROPERTY", "VALUE"))]
    print(f"bench: {name}")
    for row in [("DEVICE", "PROPERTY", "VALUE"), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
