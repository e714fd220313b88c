"""Test support for the secret scans: the session keys of a run, recomputed independently.

Each AuthenticationRequest the VNO sent carries RAND and AUTN; the credential that made it is
the one whose f1 gives AUTN's MAC (TS 33.102 6.3.2), and Milenage with that K/OPc gives the
RES, CK, IK (and c3 the Kc) the card answered with.
"""

from __future__ import annotations

from mcim_hil.aka.milenage import Milenage, c3_kc
from report_support import ArtifactRun


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def session_keys_of(run: ArtifactRun) -> dict[str, bytes]:
    """'RES n', 'CK n', 'IK n', 'Kc n' of the n-th AKA of the run (n from 0), for every AKA
    whose AUTN one of the run's K/OPc pairs made."""
    pairs = [(run.secrets[name], run.secrets[name.replace(" K", " OPc")])
             for name in run.secrets if name.endswith(" K") and name.replace(" K", " OPc") in run.secrets]
    keys: dict[str, bytes] = {}
    challenges = [m["fields"] for m in run.run_json_messages() if m["kind"] == "AuthenticationRequest"]
    for n, fields in enumerate(challenges):
        rand, autn = bytes.fromhex(fields["rand"]), bytes.fromhex(fields["autn"])
        for k, opc in pairs:
            milenage = Milenage(k, opc)
            res, ck, ik, ak = milenage.f2345(rand)
            if milenage.f1(rand, _xor(autn[:6], ak), autn[6:8]) == autn[8:]:
                keys.update({f"RES {n}": res, f"CK {n}": ck, f"IK {n}": ik, f"Kc {n}": c3_kc(ck, ik)})
                break
    return keys
