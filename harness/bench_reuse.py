"""The bench file that reaches a bench `mcim-hil bench up` keeps running, written beside it.

It names the running devices as a real bench names its hardware (the swtpm TCTI and its EK
CA chain, the virtual card's reader, the module's pty) plus the module's air link, keeps the
original file's secrets by reference (file paths made absolute) and its topology and m2me
sections, so `mcim-hil run --bench THAT_FILE` works in both air modes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .bench import Bench, SecretRef
from .emulated import Endpoints


def _secret(ref: SecretRef) -> dict[str, str]:
    return {"env": ref.env} if ref.env else {"file": str(Path(ref.file or "").resolve())}


def reuse_bench_data(bench: Bench, endpoints: Endpoints, air_link: Path | None) -> dict[str, Any]:
    original = yaml.safe_load(bench.path.read_text()) or {}
    data: dict[str, Any] = {"name": f"{bench.name}-running"}
    if bench.tpm is not None and endpoints.tpm_tcti:
        data["tpm"] = {"tcti": endpoints.tpm_tcti,
                       "ek_ca": [str(p) for p in [*endpoints.ek_ca_certificates, *bench.tpm.ek_ca]]}
    if bench.uicc is not None:
        uicc: dict[str, Any] = {"profile": bench.uicc.profile, "shared": True}
        if bench.uicc.via_modem:
            uicc["via_modem"] = True
        elif endpoints.uicc_reader:
            uicc["reader"] = endpoints.uicc_reader
        secrets = {name: _secret(ref) for name, ref in (("adm1", bench.uicc.adm1), ("pin1", bench.uicc.pin1))
                   if ref is not None}
        if secrets:
            uicc["secrets"] = secrets
        data["uicc"] = uicc
    if bench.modem is not None and endpoints.modem_port:
        modem: dict[str, Any] = {"port": endpoints.modem_port, "baudrate": bench.modem.baudrate,
                                 "timeout": bench.modem.timeout}
        if air_link is not None:
            modem["air_link"] = str(air_link)
        data["modem"] = modem
    for section in ("topology", "m2me"):
        if section in original:
            data[section] = original[section]
    return data


def write_reuse_bench_file(bench: Bench, endpoints: Endpoints, air_link: Path | None, path: Path) -> Path:
    header = (f"# Written by `mcim-hil bench up` from {bench.path}: the bench it keeps running.\n"
              f"# Valid while that bench is up:  mcim-hil run --bench {path}\n")
    path.write_text(header + yaml.safe_dump(reuse_bench_data(bench, endpoints, air_link), sort_keys=False))
    return path
