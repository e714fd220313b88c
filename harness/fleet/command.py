"""``mcim-hil fleet``: N M2MEs provisioned by the old SHO, then all changing to a new SHO, with
and without the IVF; a progress bar while it runs, then the table, fleet.json and fleet.html."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .population import FleetError, FleetSpec, SharedPki
from .real import real_runner
from .report import table, write
from .runner import connect, run_mode


class ProgressBar:
    """One line on a terminal, redrawn; a line per 25% otherwise."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self.label = ""
        self._phase = ""
        self._last_quarter = -1

    def start(self, label: str) -> None:
        self.label = label
        self._last_quarter = -1
        self.update("starting", 0, 1)

    def update(self, phase: str, done: int, total: int) -> None:
        fraction = min(1.0, done / total) if total else 1.0
        if self.tty:
            filled = int(fraction * self.width)
            self.stream.write(f"\r{self.label:<12} [{'#' * filled}{'.' * (self.width - filled)}] "
                              f"{phase:<13} {done:>8}/{total:<8}")
            self.stream.flush()
        elif phase != self._phase or int(fraction * 4) > self._last_quarter:
            self._phase = phase
            self._last_quarter = int(fraction * 4)
            print(f"{self.label}: {phase} {done}/{total}", file=self.stream, flush=True)

    def finish(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r" + " " * (self.width + 50) + "\r")
        print(f"{self.label}: {line}", file=self.stream, flush=True)


def fleet_command(args: Any) -> int:
    """Run the fleet the arguments ask for; bad input -> FleetError (one line, from the CLI)."""
    spec = FleetSpec(devices=args.devices, real=args.real, configurations=args.configurations,
                     tampered=args.tampered, updated=getattr(args, "updated", 0))
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers <= 0:
        raise FleetError(f"--workers must be at least 1, not {workers}")
    modes = [True] if args.ivf_only else [False] if args.no_ivf else [True, False]
    client = connect(args.scheduler) if args.scheduler else None
    out_dir = Path(args.out) if args.out else Path("runs") / f"fleet-{time.strftime('%Y%m%d-%H%M%S')}"
    bar = ProgressBar()
    summaries = []
    started = time.perf_counter()
    try:
        pki = SharedPki.create()
        real = real_runner(args.bench, spec.real, out_dir)
        for with_ivf in modes:
            bar.start("with IVF" if with_ivf else "without IVF")
            try:
                summary = run_mode(spec, with_ivf, pki, workers=workers, client=client, real=real,
                                   progress=bar.update)
            except FleetError:
                raise
            except Exception as exc:  # a bench or a worker failing: one line, named
                raise FleetError(f"{bar.label}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") \
                    from exc
            bar.finish(f"{summary.changed} changed, {summary.refused} refused in {summary.change_s:.2f} s "
                       f"({summary.executor}, {summary.shards} shards)")
            summaries.append(summary)
    finally:
        if client is not None:
            client.close()
    meta = {"workers": workers, "scheduler": args.scheduler, "bench": args.bench,
            "wall_s": round(time.perf_counter() - started, 2), "cpus": os.cpu_count()}
    written = write(out_dir, spec, summaries, meta)
    print(table(summaries))
    print(f"fleet.json and fleet.html in {out_dir}; open {written['html']}")
    lost = [s for s in summaries if s.tampered_accepted]
    if lost:
        print(f"FAILED: {sum(s.tampered_accepted for s in lost)} tampered M2ME(s) got an MCIM", file=sys.stderr)
        return 1
    broken = [b for s in summaries for b in s.real_benches if not b["changed"]]
    if broken:
        print(f"FAILED: {len(broken)} real bench run(s) did not change SHO (see their report.html)", file=sys.stderr)
        return 1
    return 0
