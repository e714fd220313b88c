"""The VNO: attach, AKA and IP connectivity over its air interface (TR 33.812 5.1.3.7.1 steps 1-6).

The VNO implements the emulated modem's ``AirInterface``: ``attach(imsi, authenticate)`` runs
the AKA on the M2ME's UICC through ``authenticate(rand, autn) -> response data + SW``, asking
for the AVs whoever serves the identity's PLMN (a routing table PLMN -> address: the PCID's
MCC/MNC lead to the RO's ICF (000 s1 NOTE), the MCIM's IMSI to its SHO's AuC).
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from typing import Callable

from mcim_hil.emulators.modem import AttachResult  # the air interface's result, defined by the modem emulator
from mcim_hil.network.bus import Bus, Entity, expect_reply
from mcim_hil.network.messages import (
    CAUSE_ILLEGAL_MS,
    CAUSE_IMSI_UNKNOWN,
    CAUSE_NETWORK_FAILURE,
    CAUSE_MAC_FAILURE,
    CAUSE_PROTOCOL_ERROR,
    CAUSE_SYNCH_FAILURE,
    AttachAccept,
    AttachReject,
    AttachRequest,
    AuthDataReject,
    AuthDataRequest,
    AuthDataResponse,
    AuthenticationFailure,
    AuthenticationReject,
    AuthenticationRequest,
    AuthenticationResponse,
    DetachAccept,
    DetachRequest,
    Message,
    ResyncRequest,
)
from mcim_hil.network.store import Store
from mcim_hil.network.subscription import (
    CAUSE_ESM_FAILURE,
    ESM_CAUSE_UNKNOWN_APN,
    PdnConnectivityReject,
    PdnConnectivityRequest,
    TrafficRefused,
    UpdateLocationAnswer,
    UpdateLocationRequest,
)

Authenticate = Callable[[bytes, bytes], bytes]

CAUSE_PLMN_NOT_ALLOWED = 11  # TS 24.008 10.5.5.14: no route to the identity's home
DEFAULT_APN = "internet"     # an unlimited subscription's default APN (ours)
CAUSE_CONGESTION = 22        # TS 24.008 G.3: no address left in the pool

# TS 31.102 7.1.2: AUTHENTICATE answers 'DB' L RES L CK L IK [L Kc] or 'DC' L AUTS
TAG_SUCCESS = 0xDB
TAG_SYNC_FAILURE = 0xDC
SW_OK = b"\x90\x00"
SW_MAC_FAILURE = b"\x98\x62"  # TS 31.102 7.3: authentication error, incorrect MAC


def air_address(imsi: str) -> str:
    """The M2ME's address on the air interface, before it has an IP address."""
    return f"m2me:{imsi}"


class Vno(Entity):
    """A visited network: attaches M2MEs, authenticates them with AKA, leases IP addresses."""

    def __init__(self, bus: Bus, store: Store, *, name: str, address: str, plmn: str,
                 ip_pool: str = "10.45.0.0/24", routes: dict[str, str] | None = None,
                 tac: str = "0001", ci: str = "00000001") -> None:
        super().__init__(bus, address)
        self.name = name
        self.plmn = plmn
        self.tac = tac
        self.ci = ci
        self.routes: dict[str, str] = {}
        for prefix, target in (routes or {}).items():
            self.add_route(prefix, target)
        self.pool = ipaddress.ip_network(ip_pool)
        self.db = store.entity("vno")
        self.db.define("leases", {"imsi": "TEXT", "ip_address": "TEXT", "leased_at": "REAL"}, "imsi")
        # IP address -> (IMSI, APN, addresses its connectivity reaches): a session on a limited
        # APN reaches those only (TS 23.401 4.3.8); the gateway drops the rest
        self.sessions: dict[str, tuple[str, str, tuple[str, ...]]] = {}
        self.refused: list[TrafficRefused] = []
        bus.add_gate(self._gate)

    # -- routing -------------------------------------------------------------------------
    def add_route(self, prefix: str, address: str) -> None:
        """AVs for identities starting with ``prefix`` come from ``address``. A prefix is a PLMN
        (MCC+MNC digits) or a longer IMSI range; the longest matching prefix wins."""
        if not prefix.isdigit():
            raise ValueError(f"{self.address}: route prefix {prefix!r} is not digits")
        self.routes[prefix] = address

    def route(self, imsi: str) -> str | None:
        """The AV source for an identity: the longest matching prefix of the routing table."""
        best = max((p for p in self.routes if imsi.startswith(p)), key=len, default=None)
        return self.routes[best] if best is not None else None

    def is_home(self, imsi: str) -> bool:
        return imsi.startswith(self.plmn)

    # -- the air interface (AirInterface of mcim_hil.emulators.modem) -------------------
    def attach(self, imsi: str, authenticate: Authenticate, apn: str | None = None) -> AttachResult:
        """Attach ``imsi``: AKA through ``authenticate``, then a PDN connection on ``apn`` (None: the
        subscription's default APN) with an IP address, if the subscription allows it (000 s1-s6)."""
        request = AttachRequest(sender=air_address(imsi), recipient=self.address, imsi=imsi)
        reply = self.bus.request(request, via=lambda m: self._attach(imsi, authenticate, apn))
        if isinstance(reply, AttachAccept):
            return AttachResult(accepted=True, ip_address=reply.ip_address, home=reply.home,
                                reject_cause=None, tac=self.tac, ci=self.ci)
        reject = expect_reply(reply, AttachReject)
        return AttachResult(accepted=False, ip_address=None, home=False,
                            reject_cause=reject.cause, tac=self.tac, ci=self.ci)

    def detach(self, imsi: str) -> None:
        """Release the bearer and the address of ``imsi``."""
        request = DetachRequest(sender=air_address(imsi), recipient=self.address, imsi=imsi)
        self.bus.request(request, via=lambda m: self._detach(imsi))

    def lease(self, imsi: str) -> str | None:
        """The IP address leased to ``imsi``, if attached."""
        row = self.db.get("leases", imsi=imsi)
        return row["ip_address"] if row else None

    # -- inside the attach ---------------------------------------------------------------
    def _attach(self, imsi: str, authenticate: Authenticate, apn: str | None = None) -> Message:
        air = air_address(imsi)
        source = self.route(imsi)
        if source is None:
            return AttachReject(sender=self.address, recipient=air, imsi=imsi,
                                cause=CAUSE_PLMN_NOT_ALLOWED)
        data = self.request(AuthDataRequest(sender=self.address, recipient=source, imsi=imsi),
                            AuthDataResponse, AuthDataReject)
        if isinstance(data, AuthDataReject):
            return AttachReject(sender=self.address, recipient=air, imsi=imsi, cause=CAUSE_IMSI_UNKNOWN)
        if not data.avs:   # an AV source that sent none: no AKA can run (TS 24.301 #17, network failure)
            return AttachReject(sender=self.address, recipient=air, imsi=imsi, cause=CAUSE_NETWORK_FAILURE)
        av = data.avs[0]
        answer = self._challenge(imsi, av.rand, av.autn, authenticate)
        if isinstance(answer, AuthenticationFailure) and answer.cause == CAUSE_SYNCH_FAILURE:
            # TS 33.102 6.3.5: resynchronise at the AV source with RAND and AUTS, retry once
            data = self.request(ResyncRequest(sender=self.address, recipient=source, imsi=imsi,
                                              rand=av.rand, auts=answer.auts or b""),
                                AuthDataResponse, AuthDataReject)
            if isinstance(data, AuthDataReject):
                return AttachReject(sender=self.address, recipient=air, imsi=imsi,
                                    cause=CAUSE_SYNCH_FAILURE)
            av = data.avs[0]
            answer = self._challenge(imsi, av.rand, av.autn, authenticate)
        if isinstance(answer, AuthenticationFailure):
            return AttachReject(sender=self.address, recipient=air, imsi=imsi, cause=answer.cause)
        if not hmac.compare_digest(answer.res, av.xres):
            # TS 24.301 5.4.2.5 / TS 24.008 4.7.7.5.1: RES != XRES -> AUTHENTICATION REJECT,
            # which the UE treats as cause #3 Illegal MS/UE (USIM invalid)
            self.bus.post(AuthenticationReject(sender=self.address, recipient=air, imsi=imsi))
            return AttachReject(sender=self.address, recipient=air, imsi=imsi, cause=CAUSE_ILLEGAL_MS)
        subscription = self.request(UpdateLocationRequest(sender=self.address, recipient=source, imsi=imsi),
                                    UpdateLocationAnswer)
        self.bus.post(PdnConnectivityRequest(sender=air, recipient=self.address, imsi=imsi, apn=apn))
        if apn is None:   # TS 23.401 5.3.2.1: no APN requested, the subscription's default
            apn = subscription.apns[0] if subscription.apns else DEFAULT_APN
        if not subscription.allows(apn):
            # TS 24.301 5.5.1.2.5: ATTACH REJECT #19 carrying PDN CONNECTIVITY REJECT #27
            self.bus.post(PdnConnectivityReject(sender=self.address, recipient=air, imsi=imsi, apn=apn,
                                                esm_cause=ESM_CAUSE_UNKNOWN_APN))
            return AttachReject(sender=self.address, recipient=air, imsi=imsi, cause=CAUSE_ESM_FAILURE)
        ip = self._lease(imsi)
        if ip is None:
            return AttachReject(sender=self.address, recipient=air, imsi=imsi, cause=CAUSE_CONGESTION)
        for address in [a for a, s in self.sessions.items() if s[0] == imsi]:
            del self.sessions[address]
        self.sessions.pop(ip, None)
        if subscription.reachable is not None:
            self.sessions[ip] = (imsi, apn, subscription.reachable)
        return AttachAccept(sender=self.address, recipient=air, imsi=imsi, ip_address=ip,
                            home=self.is_home(imsi))

    def _challenge(self, imsi: str, rand: bytes, autn: bytes,
                   authenticate: Authenticate) -> AuthenticationResponse | AuthenticationFailure:
        request = AuthenticationRequest(sender=self.address, recipient=air_address(imsi),
                                        imsi=imsi, rand=rand, autn=autn)
        reply = self.bus.request(request, via=lambda m: _card_answer(imsi, self.address,
                                                                     authenticate(rand, autn)))
        return expect_reply(reply, AuthenticationResponse, AuthenticationFailure)

    def _lease(self, imsi: str) -> str | None:
        existing = self.lease(imsi)
        if existing is not None:
            return existing
        taken = {row["ip_address"] for row in self.db.select("leases")}
        hosts = self.pool.hosts()
        next(hosts, None)  # the first host is the gateway
        for host in hosts:
            if str(host) not in taken:
                self.db.put("leases", imsi=imsi, ip_address=str(host), leased_at=time.time())
                return str(host)
        return None

    def _gate(self, message: Message) -> Message | None:
        """Drop a packet of a limited session to an address its APN does not reach."""
        session = self.sessions.get(message.sender)
        if session is None or message.recipient in session[2]:
            return None
        imsi, apn, reachable = session
        refusal = TrafficRefused(sender=self.address, recipient=message.sender, source=message.sender,
                                 destination=message.recipient, apn=apn,
                                 reason=f"{imsi} on APN {apn} reaches {', '.join(reachable)} only")
        self.refused.append(refusal)
        return refusal

    def _detach(self, imsi: str) -> Message:
        for address in [a for a, s in self.sessions.items() if s[0] == imsi]:
            del self.sessions[address]
        self.db.delete("leases", imsi=imsi)
        return DetachAccept(sender=self.address, recipient=air_address(imsi), imsi=imsi)


def _card_answer(imsi: str, vno: str, answer: bytes) -> AuthenticationResponse | AuthenticationFailure:
    """What the M2ME sends back, from the USIM's AUTHENTICATE answer (data + SW)."""
    air = air_address(imsi)
    sw, body = answer[-2:], answer[:-2]
    if sw == SW_MAC_FAILURE:
        return AuthenticationFailure(sender=air, recipient=vno, imsi=imsi, cause=CAUSE_MAC_FAILURE,
                                     status_word=sw.hex())
    if sw == SW_OK and len(body) >= 2 and len(body) >= 2 + body[1]:
        value = body[2:2 + body[1]]
        if body[0] == TAG_SUCCESS:
            return AuthenticationResponse(sender=air, recipient=vno, imsi=imsi, res=value)
        if body[0] == TAG_SYNC_FAILURE:
            return AuthenticationFailure(sender=air, recipient=vno, imsi=imsi,
                                         cause=CAUSE_SYNCH_FAILURE, auts=value, status_word=sw.hex())
    return AuthenticationFailure(sender=air, recipient=vno, imsi=imsi, cause=CAUSE_PROTOCOL_ERROR,
                                 status_word=sw.hex() if len(answer) >= 2 else answer.hex())
