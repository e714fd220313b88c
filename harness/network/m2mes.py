"""The M2MES, the equipment supplier: personalises pristine M2MEs and vouches for their platform.

It runs a CA that issues each platform's PfC over its TPM attestation key, publishes the
reference values of the components it ships, answers OCSP for its PfCs (and can revoke one),
and gets each pristine M2ME's temporary-access credential (PCID, K, OPc) from the CCIF when it
personalises it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from mcim_hil.network.attestation import ReferenceValues
from mcim_hil.network.bus import Bus, Entity
from mcim_hil.network.messages import (
    CredentialIssued,
    CredentialIssueRequest,
    Message,
    OcspRequest,
    OcspResponse,
    ReferenceValuesRequest,
    ReferenceValuesResponse,
    SupplierNotice,
    SupplierNoticeAck,
)
from mcim_hil.network.pki import CertificateAuthority, OcspResponder, issue_platform_credential
from mcim_hil.network.store import Store


@dataclass(frozen=True)
class Personalisation:
    """What the factory writes into a pristine M2ME: the PCID credential for its UICC, the PfC for its TRE."""

    platform_id: str
    pcid: str
    k: bytes = field(repr=False)
    opc: bytes = field(repr=False)
    amf: bytes
    pfc: x509.Certificate
    not_after: float | None = None   # end of the PCID credential's lifetime (CCIF)

    @property
    def pfc_der(self) -> bytes:
        return self.pfc.public_bytes(serialization.Encoding.DER)


class M2mes(Entity):
    """Equipment supplier: CA and OCSP responder for PfCs, reference values, personalisation."""

    def __init__(self, bus: Bus, store: Store, *, address: str, ccif_address: str,
                 name: str = "mcim-hil M2M equipment supplier", model: str = "mcim-hil-m2me",
                 ca: CertificateAuthority | None = None) -> None:
        super().__init__(bus, address)
        self.ccif_address = ccif_address
        self.model = model
        self.ca = ca or CertificateAuthority.create(f"{name} PfC CA", organization=name)
        self.ocsp = OcspResponder(self.ca)
        self.notify: list[str] = []  # PVAs told of revocations and new reference values
        self.db = store.entity("m2mes")
        self.db.define("platforms", {"platform_id": "TEXT", "pcid": "TEXT", "model": "TEXT", "serial": "TEXT",
                                     "pfc": "BLOB", "revoked": "INTEGER", "personalised_at": "REAL"},
                       "platform_id")
        self.db.define("reference_values", {"model": "TEXT", "component": "TEXT", "digest": "BLOB"},
                       ("model", "component"))
        self.on(OcspRequest, self._ocsp)
        self.on(ReferenceValuesRequest, self._reference_values)

    @property
    def certificate(self) -> x509.Certificate:
        """The PfC CA certificate: the PVA's trust anchor for PfCs."""
        return self.ca.certificate

    # -- manufacturing ------------------------------------------------------------------------
    def personalise(self, platform_id: str, ak_public_key: CertificatePublicKeyTypes, *,
                    model: str | None = None) -> Personalisation:
        """Personalise a pristine M2ME: a PCID credential from the CCIF and a PfC over its AK."""
        issued = self.request(CredentialIssueRequest(sender=self.address, recipient=self.ccif_address,
                                                     platform_id=platform_id), CredentialIssued)
        pfc = self.issue_pfc(platform_id, ak_public_key, model=model, pcid=issued.pcid)
        return Personalisation(platform_id=platform_id, pcid=issued.pcid, k=issued.k, opc=issued.opc,
                               amf=issued.amf, pfc=pfc, not_after=issued.not_after)

    def issue_pfc(self, platform_id: str, ak_public_key: CertificatePublicKeyTypes, *,
                  model: str | None = None, pcid: str | None = None) -> x509.Certificate:
        """A PfC over ``ak_public_key`` (also for a platform whose PCID credential is already on its card)."""
        pfc = issue_platform_credential(self.ca, ak_public_key, platform_id, model=model or self.model)
        self.db.put("platforms", platform_id=platform_id, pcid=pcid, model=model or self.model,
                    serial=str(pfc.serial_number), pfc=pfc.public_bytes(serialization.Encoding.DER),
                    revoked=False, personalised_at=time.time())
        return pfc

    def revoke(self, platform_id: str, reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise) -> None:
        """Revoke a platform's PfC: the OCSP responder answers ``revoked`` from now on."""
        row = self.db.get("platforms", platform_id=platform_id)
        if row is None:
            raise KeyError(f"{self.address}: no PfC issued for platform {platform_id!r}")
        self.ocsp.revoke(int(row["serial"]), reason)
        self.db.update("platforms", {"platform_id": platform_id}, revoked=True)
        self._tell(revoked_serial=int(row["serial"]))

    # -- reference values --------------------------------------------------------------------
    def publish_reference_values(self, values: dict[str, bytes], *, model: str | None = None) -> None:
        """Publish component -> expected digest for ``model`` (replacing earlier values of those components)."""
        for component, digest in values.items():
            self.db.put("reference_values", model=model or self.model, component=component, digest=bytes(digest))
        self._tell(model=model or self.model)

    def _tell(self, **change: object) -> None:
        """Tell the PVAs that rely on this supplier what changed, so none keeps a stale answer."""
        for address in self.notify:
            self.request(SupplierNotice(sender=self.address, recipient=address, **change),  # type: ignore[arg-type]
                         SupplierNoticeAck)

    def reference_values(self, model: str | None = None) -> dict[str, bytes]:
        """The published component -> digest of ``model`` (this supplier's default model if None)."""
        rows = self.db.select("reference_values", model=model or self.model)
        return {row["component"]: row["digest"] for row in rows}

    # -- handlers -------------------------------------------------------------------------------
    def _ocsp(self, msg: OcspRequest) -> Message:
        return OcspResponse(sender=self.address, recipient=msg.sender,
                            response_der=self.ocsp.respond(msg.request_der))

    def _reference_values(self, msg: ReferenceValuesRequest) -> Message:
        model = msg.model or self.model
        signed = ReferenceValues(self.reference_values(model), model).sign(self.ca)
        return ReferenceValuesResponse(sender=self.address, recipient=msg.sender, model=model,
                                       components=dict(signed.components), signature=signed.signature)
