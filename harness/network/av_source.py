"""What the ICF (for PCIDs) and an SHO's AuC (for its IMSIs) both are to a VNO: a source of
authentication vectors, which resynchronises its SQN from an AUTS (TS 33.102 6.3.5)."""

from __future__ import annotations

from mcim_hil.aka.auc import AkaError, AuC
from mcim_hil.network.messages import AuthDataReject, AuthDataRequest, AuthDataResponse, Message, ResyncRequest

MAX_AVS = 5  # a batch a VLR/MME would ask for (TS 29.002 MAP SendAuthenticationInfo allows 1..5)


def answer(address: str, msg: AuthDataRequest | ResyncRequest, auc: AuC | None, unknown: str) -> Message:
    """AVs for ``msg.imsi`` from ``auc`` (None: the identity is unknown, ``unknown`` says why);
    a ResyncRequest first resynchronises ``auc`` from the AUTS. The caller keeps the AuC's new
    SQN state when the answer is an AuthDataResponse."""
    if auc is None:
        return AuthDataReject(sender=address, recipient=msg.sender, imsi=msg.imsi, reason=unknown)
    if isinstance(msg, ResyncRequest):
        try:
            auc.resync(msg.rand, msg.auts)
        except AkaError as exc:
            return AuthDataReject(sender=address, recipient=msg.sender, imsi=msg.imsi,
                                  reason=f"resynchronisation refused: {exc}")
    avs = tuple(auc.generate_av() for _ in range(max(1, min(msg.count, MAX_AVS))))
    return AuthDataResponse(sender=address, recipient=msg.sender, imsi=msg.imsi, avs=avs)
