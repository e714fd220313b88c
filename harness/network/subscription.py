"""Subscription data a VNO gets for an identity it attaches, and what it limits.

The home of an identity answers the VNO's Update Location with the APNs the subscription allows
and, per APN, the addresses its connectivity reaches (TS 29.272 5.2.1.1 ULR/ULA, APN-Configuration;
TS 23.401 4.3.8 for the PDN connection). The RO's ICF answers for a PCID: one APN whose
connectivity reaches the RO only (TR 33.812 5.1.3.7.1 step 6 NOTE, 5.1.3.8.4.3 step 6). A SHO's
subscriber is not limited here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import Message

PCID_APN = "m2m.provisioning"   # the APN the RO's subscription data names for a PCID

# TS 24.301 9.9.3.9 / 9.9.4.4 (TS 24.008 10.5.6.6): the causes a real network gives
CAUSE_ESM_FAILURE = 19            # EMM: ATTACH REJECT carrying a PDN CONNECTIVITY REJECT
ESM_CAUSE_UNKNOWN_APN = 27        # ESM: missing or unknown APN
ESM_CAUSE_NOT_SUBSCRIBED = 33     # ESM: requested service option not subscribed


@dataclass(frozen=True, kw_only=True, repr=False)
class UpdateLocationRequest(Message):
    """VNO -> the identity's home (ICF for a PCID, SHO for an MCIM): the subscription data (ULR)."""

    imsi: str


@dataclass(frozen=True, kw_only=True, repr=False)
class UpdateLocationAnswer(Message):
    """Home -> VNO (ULA): the APNs allowed (None: any) and the addresses they reach (None: any)."""

    imsi: str
    apns: tuple[str, ...] | None = None
    reachable: tuple[str, ...] | None = None

    def allows(self, apn: str) -> bool:
        return self.apns is None or apn in self.apns


@dataclass(frozen=True, kw_only=True, repr=False)
class PdnConnectivityRequest(Message):
    """M2ME -> VNO: the PDN connection of the attach, on an APN (TS 24.301 6.5.1; None: none named)."""

    imsi: str
    apn: str | None


@dataclass(frozen=True, kw_only=True, repr=False)
class PdnConnectivityReject(Message):
    """VNO -> M2ME: no PDN connection on that APN, with its ESM cause (TS 24.301 6.5.1.4)."""

    imsi: str
    apn: str
    esm_cause: int


@dataclass(frozen=True, kw_only=True, repr=False)
class TrafficRefused(Message):
    """VNO -> M2ME: a packet of a session on a limited APN to an address that APN does not reach,
    dropped at the gateway (the bus records the attempt, then this)."""

    source: str
    destination: str
    apn: str
    reason: str
