"""End-state checks done on the devices themselves after a fault case.

The M2ME must hold exactly one usable credential (old MCIM, new MCIM, or the initial-access
credential), proven by a real attach with it; never two SHOs' credentials active, never none;
no transient TPM object leaked; the card's ADM1/PIN1 retry counters not lower than before."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcim_hil.drivers.tpm import Tpm
from mcim_hil.drivers.uicc import ADM1, PIN1
from mcim_hil.m2me.tre import ACCESS_CREDENTIAL_HANDLE, MCIM_HANDLE, PREPROVISIONED_HANDLE

MCIM_HANDLES = (MCIM_HANDLE, PREPROVISIONED_HANDLE)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Baseline:
    """What the devices showed before the case's procedure ran."""
    adm1_tries: int | None
    pin1_tries: int | None
    transient_free: int | None


def _tries(uicc: Any) -> tuple[int | None, int | None]:
    return uicc.pin_tries_left(ADM1), uicc.pin_tries_left(PIN1)


def transient_free(tcti: str) -> int | None:
    with Tpm.open(tcti, timeout=10.0) as tpm:
        return tpm.transient_slots_free()


def baseline(s: Any, tcti: str) -> Baseline:
    adm1, pin1 = _tries(s.devices.uicc)
    return Baseline(adm1, pin1, transient_free(tcti))


def credential_checks(s: Any, before: Baseline) -> tuple[str, list[Check]]:
    """While the session is up: which credential the card presents, an attach with it, the
    SHOs' view, the TPM's MCIM objects, the retry counters. Returns (credential, checks)."""
    checks: list[Check] = []
    uicc, net, pcid = s.devices.uicc, s.network, s.m2me.pcid
    uicc.reconnect()    # a fault may have left the card session mid-command: a new session, as a modem would
    imsi = s.m2me.identity_on_card()
    old = net.sho.imsi_of(pcid)
    new = net.nsho.imsi_of(pcid) if net.nsho is not None else None
    credential = {pcid: "initial-access", old: "old MCIM", new: "new MCIM"}.get(imsi, "none")
    checks.append(Check("one credential on the card", credential != "none",
                        f"the card presents {credential}" if credential != "none"
                        else "the card presents an IMSI that is no credential of this M2ME"))
    try:
        s.m2me.detach()
        attached = s.m2me.attach(imsi)
        ok, why = attached.accepted, "" if attached.accepted else f"rejected (cause {attached.reject_cause})"
    except Exception as exc:  # noqa: BLE001 - the verdict names it
        ok, why = False, f"{type(exc).__name__}: {exc}"
    checks.append(Check("a real attach with it", ok, f"attached with {credential}" if ok else why))
    active = [name for name, sho, i in (("old SHO", net.sho, old), ("new SHO", net.nsho, new))
              if sho is not None and i is not None and (sho.subscriber(i) or {}).get("state") == "active"]
    checks.append(Check("never two SHOs' credentials active", len(active) <= 1,
                        f"active at: {', '.join(active) or 'none (the PCID)'}"))
    adm1, pin1 = _tries(uicc)
    lower = [f"{n} {a}->{b}" for n, a, b in (("ADM1", before.adm1_tries, adm1), ("PIN1", before.pin1_tries, pin1))
             if a is not None and (b is None or b < a)]
    checks.append(Check("retry counters not lower", not lower,
                        "; ".join(lower) or f"ADM1 {adm1}, PIN1 {pin1} tries left"))
    return credential, checks


def tpm_checks(tcti: str, credential: str, before: Baseline) -> list[Check]:
    """After the session let go of its keys: objects persisted, transient slots."""
    with Tpm.open(tcti, timeout=10.0) as tpm:
        persistent = tpm.list_persistent()
        free = tpm.transient_slots_free()
    mcims = [h for h in persistent if h in MCIM_HANDLES]
    want = 1 if credential in ("old MCIM", "new MCIM") else 0
    checks = [
        Check("the TPM's MCIM objects match the card", len(mcims) == want,
              f"{len(mcims)} MCIM object(s) ({', '.join(f'0x{h:08x}' for h in mcims) or 'none'}) "
              f"with the card on {credential}"),
        Check("the initial-access credential kept", ACCESS_CREDENTIAL_HANDLE in persistent,
              f"0x{ACCESS_CREDENTIAL_HANDLE:08x} {'present' if ACCESS_CREDENTIAL_HANDLE in persistent else 'GONE'}"),
        Check("no transient TPM object leaked", before.transient_free is None or free == before.transient_free,
              f"{free} free transient slots, {before.transient_free} before"),
    ]
    return checks
