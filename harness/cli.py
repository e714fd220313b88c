"""The mcim-hil command line.

    mcim-hil bench check [--bench FILE]   open every device and print what it is
    mcim-hil bench up [--bench FILE]      start the emulated bench and keep it up
    mcim-hil run [--bench FILE] [--procedure initial|initial-ivf|change-sho|pristine|renew-access-credential|firmware-update|firmware-update-change-sho]
                 [--variant preprovisioned] [--component NAME] [--to VERSION] [--air module|relayed] [--out DIR]
                                          run a TR 33.812 procedure on the bench, one row per seed step
    mcim-hil fleet --devices N [--real K] [--no-ivf|--ivf-only] [--configurations C] [--tampered T]
                   [--updated U] [--workers W] [--scheduler ADDRESS] [--out DIR]
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

from mcim_hil.drivers.errors import DeviceError

from .bench import BenchFileError, SecretUnavailable, bench_path, load_bench
from .emulated import EmulatedBench
from .lab import LabError
from .m2me.tre import describe_access_credential
from .run import BenchUnusable, Terminated, emulator_problems, interruptible, signal_name

# the M2ME's measured components, in boot order (harness/m2me/components.py)
_COMPONENTS = ("platform-firmware", "module-firmware", "m2me-agent")
DEBUG_ENV = "MCIM_HIL_DEBUG"   # set it to see the traceback behind a one-line error


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
    run.add_argument("--procedure", default="initial", choices=["initial", "initial-ivf", "change-sho", "change-sho-preprovisioned", "pristine",
                              "renew-access-credential", "firmware-update", "firmware-update-change-sho"],
                     help="initial: seed 000 (21 steps); initial-ivf: seed 004 3rd change (14 steps, IVF); "
                          "change-sho: seed 004 4th change (initial-ivf, then 14 steps of the change of SHO); "
                          "change-sho-preprovisioned: its variant, both SHOs' MCIMs in the TRE, each under its own "
                          "sealing parent; pristine: 5.1.3.8.4.3 (initial-ivf, back to the PCID, 15 steps to the new SHO); "
                          "renew-access-credential: the network replaces the PCID credential in the TRE; "
                          "firmware-update: initial-ivf, then a signed update of one component, a new PfC (U1-U7); "
                          "firmware-update-change-sho: that, then the change of SHO's 14 steps")
    run.add_argument("--variant", choices=["preprovisioned"], default=None,
                     help="with --procedure change-sho: preprovisioned, the variant at the end of 5.1.3.8.4.2 "
                          "(the same as --procedure change-sho-preprovisioned)")
    run.add_argument("--component", choices=list(_COMPONENTS), default=None,
                     help="with --procedure firmware-update(-change-sho): the component updated "
                          "(default module-firmware)")
    run.add_argument("--to", metavar="VERSION", default=None,
                     help="with --procedure firmware-update(-change-sho): the version offered "
                          "(default: the running one's next)")
    run.add_argument("--air", choices=["module", "relayed"], default=None,
                     help="module: the module attaches by itself (emulated modem); relayed: the harness relays "
                          "the AKA to the card (default: module on an emulated bench, else relayed)")
    run.add_argument("--out", metavar="DIR", help="where run.json goes (default: runs/<procedure>-<time>)")
    run.add_argument("--gsmtap", metavar="HOST:PORT",
                     help="listen there for GSMTAP SIM frames (a SIMtrace2) and merge them into the trace as "
                          "sniffed, or 'off' (default: the bench file's gsmtap.listen)")
    run.add_argument("--reveal-session-keys", action="store_true",
                     help="keep RES, CK, IK and Kc of the card's AUTHENTICATE answers in the artifacts "
                          "(to decrypt an air trace); the report carries a banner. Default: redacted")
    _add_fleet(sub)
    faults = sub.add_parser("faults", help="run the fault matrix: every step x every fault kind, devices checked after")
    faults.add_argument("--bench", metavar="FILE", help="bench file (default: $MCIM_HIL_BENCH or lab_config/emulated.yaml)")
    faults.add_argument("--procedure", default="change-sho", choices=["initial", "initial-ivf", "change-sho", "pristine"])
    faults.add_argument("--steps", metavar="LIST", help="seed steps, e.g. 3,8-12 (default: all)")
    faults.add_argument("--kinds", metavar="LIST", help="fault kinds: bus,uicc,tpm,modem (default: all)")
    faults.add_argument("--out", metavar="DIR", help="where faults.json and faults.html go (default: runs/faults-<procedure>-<time>)")
    args = parser.parse_args(argv)
    if args.command == "run" and args.variant is not None:
        if args.procedure != "change-sho":
            parser.error(f"--variant {args.variant} applies to --procedure change-sho only, not {args.procedure}")
        args.procedure = f"change-sho-{args.variant}"
    updating = args.command == "run" and args.procedure.startswith("firmware-update")
    if args.command == "run" and not updating and (args.component or args.to):
        parser.error(f"--component/--to apply to --procedure firmware-update only, not {args.procedure}")
    what = args.command if args.command in ("run", "fleet", "faults") else f"bench {args.bench_command}"
    try:
        with interruptible():
            if args.command == "bench" and args.bench_command == "check":
                return bench_check(args.bench)
            if args.command == "bench" and args.bench_command == "up":
                return bench_up(args.bench)
            if args.command == "run":
                from .run import run_command
                return run_command(args.bench, args.procedure, args.air, args.out, gsmtap=args.gsmtap,
                                   reveal_session_keys=args.reveal_session_keys,
                                   procedure=_update_procedure(args) if updating else None)
            if args.command == "fleet":
                return _fleet(args)
            if args.command == "faults":
                from .faults.command import faults_command
                return faults_command(args.bench, args.procedure, args.steps, args.kinds, args.out)
    except LabError as exc:
        print(exc, file=sys.stderr)
        return 2
    except BenchFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SecretUnavailable as exc:
        print(f"{bench_path(args.bench)}: {exc}", file=sys.stderr)
        return 2
    except BenchUnusable as exc:    # a well-formed bench file (or --out) that cannot serve this command
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"mcim-hil {what}: terminated by {signal_name(exc)}; the bench was stopped", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except DeviceError as exc:      # DeviceNotFound, SafetyRefused, a device that failed at set-up
        print(f"mcim-hil {what}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:        # anything else: still one line (MCIM_HIL_DEBUG=1 shows the traceback)
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"mcim-hil {what}: {type(exc).__name__}: {_first_line(exc)}", file=sys.stderr)
        return 1
    parser.error("unknown command")
    return 2


def _update_procedure(args: argparse.Namespace):
    from .procedures import firmware_update
    build = firmware_update.procedure if args.procedure == "firmware-update" else firmware_update.change_after_update
    return build(args.component or _COMPONENTS[1], args.to)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].removesuffix("; stderr tail:") if lines else "(no message)"
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
    fleet.add_argument("--updated", type=int, default=0, metavar="U",
                       help="simulated M2MEs whose module firmware the supplier updated before the change (a new "
                            "PfC; the IVF's result superseded: validated in full; default 0)")
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
    problems = emulator_problems(bench)
    if problems:
        raise BenchUnusable(problems)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    from .bench_reuse import write_reuse_bench_file
    from .emulators.air_link import AirLinkServer
    emulated = EmulatedBench(bench)
    with emulated as endpoints, ExitStack() as stack:
        air_link = None
        if emulated.modem_emulator is not None:   # so a run in another process reaches the module's radio
            server = AirLinkServer(emulated.modem_emulator, emulated.workdir / "air.sock")
            air_link = server.start()
            stack.callback(server.stop)
        reuse = write_reuse_bench_file(bench, endpoints, air_link, emulated.workdir / "bench.yaml")
        for line in endpoints.lines():
            print(line)
        print(f"bench_file={reuse}")
        print(f"# bench {bench.name} up in {endpoints.startup_s:.2f} s; SIGINT or SIGTERM stops it", flush=True)
        print(f"# reuse it: mcim-hil run --bench {reuse} (--air module or relayed)", flush=True)
        stop.wait()
    return 0


def bench_check(path: str | None) -> int:
    from .devices import open_devices
    bench = load_bench(path)
    problems = emulator_problems(bench)
    if problems:
        raise BenchUnusable(problems)
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
                ("EK", "present, " + ("certificate in NV" if ek.certificate is not None else "no certificate")),
                ("initial-access credential", describe_access_credential(tpm))]
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
