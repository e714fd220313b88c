"""Test support for the run artifacts: one procedure run on the emulated bench, its artifacts
written, and the secrets of that run as they may show up in a file (raw bytes, hex both cases).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mcim_hil.bench import load_bench
from mcim_hil.procedures import PROCEDURES, RunOutcome, run_procedure
from mcim_hil.record import Record
from mcim_hil.report import write_artifacts
from mcim_hil.session import Session, SessionOptions


@dataclass
class ArtifactRun:
    out_dir: Path
    files: dict[str, Path]
    record: Record
    outcome: RunOutcome
    secrets: dict[str, bytes] = field(default_factory=dict)   # name -> the secret's bytes

    def run_json_messages(self) -> list[dict]:
        data = self.record.to_dict()
        events = [e for s in data["steps"] for e in s["events"]] + data["outside"]
        return [e for e in events if e["type"] == "message"]

    def uicc_events(self) -> list[dict]:
        data = self.record.to_dict()
        events = [e for s in data["steps"] for e in s["events"]] + data["outside"]
        return [e for e in events if e["type"] == "device" and e["device"] == "uicc"]


def run_and_write(out_dir: Path, air: str, procedure: str = "initial", *,
                  reveal_session_keys: bool = False) -> ArtifactRun:
    """Run ``procedure`` through the real stacks and write its artifacts into ``out_dir``.

    The secrets are read from where they live while the session is up: the CCIF's credential
    of the PCID, the SHO's subscriber row of the MCIM, the bench's ADM1 and PIN1.
    """
    bench = load_bench(None)
    record = Record(meta={"bench": str(bench.path), "bench_name": bench.name, "procedure": procedure,
                          "title": PROCEDURES[procedure].title, "seed": PROCEDURES[procedure].seed, "air": air},
                    reveal_session_keys=reveal_session_keys)
    secrets: dict[str, bytes] = {}
    with Session(bench, SessionOptions(air=air), record) as session:
        record.meta["pcid"] = session.m2me.pcid
        outcome = run_procedure(PROCEDURES[procedure], session, record)
        network = session.network
        pcid_row = network.ccif.db.get("credentials", pcid=session.m2me.pcid)
        secrets["PCID K"], secrets["PCID OPc"] = pcid_row["k"], pcid_row["opc"]
        imsi = network.sho.imsi_of(session.m2me.pcid)
        if imsi is not None:
            mcim_row = network.sho.db.get("subscribers", imsi=imsi)
            secrets["MCIM K"], secrets["MCIM OPc"] = mcim_row["k"], mcim_row["opc"]
        secrets["ADM1"] = bench.uicc.adm1.resolve_key()
        secrets["PIN1"] = bench.uicc.pin1.resolve_key()
    files = write_artifacts(record, out_dir)   # after the bench closed, as the CLI does
    return ArtifactRun(out_dir, files, record, outcome, secrets)


def secret_forms(secret: bytes) -> list[bytes]:
    """How a secret could appear in a file: its bytes, its hex in lower and upper case."""
    return [secret, secret.hex().encode(), secret.hex().upper().encode()]


def leaks(path: Path, secrets: dict[str, bytes]) -> list[str]:
    """Which secrets show up in the file, in which form."""
    data = path.read_bytes()
    found = []
    for name, secret in secrets.items():
        for form in secret_forms(secret):
            if form in data:
                found.append(f"{name} as {form[:6]!r}... in {path.name}")
    return found
