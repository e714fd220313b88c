"""Manufacture: the equipment supplier (M2MES) turns the bench's devices into a pristine M2ME.

TR 33.812 5.1.3.6.8 NOTE 2: the PfC is created by the M2MES and embedded at manufacture.
The production line here: prove the AK lives in the TPM of the EK (MakeCredential /
ActivateCredential), get the PCID credential (from the CCIF, through the M2MES) and the PfC over
the AK, seal the PCID credential (PCID, K, OPc, lifetime) into the TRE at its own persistent
handle, program the UICC with it (SJA2 profile), and publish the reference values
of the components the M2ME ships with.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from mcim_hil.drivers.sja2 import Sja2
from mcim_hil.network.attestation import make_credential_challenge
from mcim_hil.network.ccif import ACCESS_LIFETIME_S

from .agent import M2me
from .tre import AccessCredential, Component


class ManufactureError(Exception):
    pass


@dataclass(frozen=True)
class Manufactured:
    platform_id: str
    pcid: str
    pfc_serial: int
    reference_values: dict[str, bytes]
    access_handle: int = 0          # where the TRE keeps the PCID credential


def manufacture(m2me: M2me, m2mes, components: list[Component], *,
                golden: dict[str, Component] | None = None, subscriber_key: bytes = b"") -> Manufactured:
    """Personalise a pristine M2ME. ``golden`` overrides, per component, what the supplier
    says it shipped (by default: what the device holds at manufacture). ``subscriber_key``: the
    M2ME subscriber's public key (DER), the only one whose re-provisioning instructions it takes."""
    tre = m2me.tre
    keys = tre.keys()
    ek = tre.endorsement_key()
    if ek.certificate is None:
        raise ManufactureError(f"{tre.tpm.tcti}: the TPM has no EK certificate in NV: the PVA could not check it")
    ak_public = keys.ak.public.marshal()
    challenge, expected = make_credential_challenge(ek.public, ak_public)
    proof = tre.activate_credential(challenge.credential_blob, challenge.encrypted_secret)
    if not hmac.compare_digest(proof, expected):
        raise ManufactureError(f"{tre.tpm.tcti}: the AK is not in the EK's TPM (credential activation failed)")

    personal = m2mes.personalise(m2me.platform_id, keys.ak.public_key)
    not_after = personal.not_after if personal.not_after is not None else time.time() + ACCESS_LIFETIME_S
    handle = tre.seal_access_credential(AccessCredential(personal.pcid, personal.k, personal.opc, personal.amf,
                                                         not_after))
    # the card gets the same credential (a return to it later unseals it from the TRE)
    Sja2(m2me.uicc).program(personal.pcid, personal.k, personal.opc, adm1=m2me._adm1(),
                            mnc_len=2, reset_sqn=True)
    m2me.pcid = personal.pcid
    m2me.subscriber_key = subscriber_key
    m2me.pfc = personal.pfc.public_bytes(serialization.Encoding.DER)
    m2me.updates.trust(m2mes.certificate)   # the key that signs its SW/FW updates (update.py)

    shipped = {c.name: c for c in components}
    shipped.update(golden or {})
    reference = {name: c.digest for name, c in shipped.items()}
    m2mes.publish_reference_values(reference)
    return Manufactured(m2me.platform_id, personal.pcid, personal.pfc.serial_number, reference, handle)
