"""The IVF (the IVP of seed 004): keeps the PVA's integrity validation results and answers a new SHO's inquiries.

TR 33.812 5.1.3.6.8 as changed by seed 004: the PVA issues the M2ME's integrity validation result
(success and the list of validated components) to the IVF; a new SHO inquires it instead of
asking the PVA to validate the integrity again (004 c4 steps 3-4). A result is kept until it
expires; an expired or unknown platform is a miss, and the new SHO then asks the PVA. A result
the PVA superseded (the platform's SW/FW was updated: a new PfC, other components, 5.1.3.6.8) is a
miss too, with the PVA's reason, until the PVA issues a fresh one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Callable

from mcim_hil.network.bus import Bus, Entity
from mcim_hil.network.messages import (
    IntegrityInquiry,
    IntegrityInquiryResponse,
    IntegrityResultAck,
    IntegrityResultIssue,
    Message,
)
from mcim_hil.network.messages_update import IntegrityResultSupersede, IntegrityResultSupersedeAck
from mcim_hil.network.store import Store

DEFAULT_LIFETIME_S = 24 * 3600.0


class Ivf(Entity):
    """Integrity validation function: platform id -> last integrity result, with an expiry."""

    def __init__(self, bus: Bus, store: Store, *, address: str, pva_addresses: Iterable[str],
                 lifetime_s: float = DEFAULT_LIFETIME_S, clock: Callable[[], float] = time.time) -> None:
        super().__init__(bus, address)
        self.pva_addresses = set(pva_addresses)  # only a PVA issues results
        self.lifetime_s = lifetime_s
        self.clock = clock
        self.db = store.entity("ivf")
        self.db.define("results", {"platform_id": "TEXT", "passed": "INTEGER", "validated_components": "JSON",
                                   "pcr_digest": "BLOB", "validated_at": "REAL", "expires_at": "REAL",
                                   "issuer": "TEXT", "superseded_at": "REAL", "superseded_reason": "TEXT"},
                       "platform_id")
        self.on(IntegrityResultIssue, self._issue)
        self.on(IntegrityResultSupersede, self._supersede)
        self.on(IntegrityInquiry, self._inquiry)

    def result(self, platform_id: str) -> dict | None:
        """The stored result of a platform, expired or not."""
        return self.db.get("results", platform_id=platform_id)

    def _issue(self, msg: IntegrityResultIssue) -> Message:
        if msg.sender not in self.pva_addresses:
            return IntegrityResultAck(sender=self.address, recipient=msg.sender, platform_id=msg.platform_id,
                                      stored=False, reason=f"{msg.sender} is not a PVA of this IVF")
        self.db.put("results", platform_id=msg.platform_id, passed=msg.passed,
                    validated_components=list(msg.validated_components), pcr_digest=msg.pcr_digest,
                    validated_at=msg.validated_at, expires_at=msg.validated_at + self.lifetime_s,
                    issuer=msg.sender)
        return IntegrityResultAck(sender=self.address, recipient=msg.sender, platform_id=msg.platform_id,
                                  stored=True)

    def _supersede(self, msg: IntegrityResultSupersede) -> Message:
        row = self.db.get("results", platform_id=msg.platform_id)
        done = (msg.sender in self.pva_addresses and row is not None and row["validated_at"] < msg.before
                and row["superseded_at"] is None)
        if done:
            self.db.update("results", {"platform_id": msg.platform_id}, superseded_at=self.clock(),
                           superseded_reason=msg.reason)
        return IntegrityResultSupersedeAck(sender=self.address, recipient=msg.sender, platform_id=msg.platform_id,
                                           superseded=done)

    def _inquiry(self, msg: IntegrityInquiry) -> Message:
        def miss(reason: str) -> Message:
            return IntegrityInquiryResponse(sender=self.address, recipient=msg.sender,
                                            platform_id=msg.platform_id, available=False, reason=reason)

        row = self.db.get("results", platform_id=msg.platform_id)
        if row is None:
            return miss("no integrity result for this platform")
        if row["superseded_reason"]:
            return miss(f"the integrity result was superseded ({row['superseded_reason']})")
        if self.clock() >= row["expires_at"]:
            return miss("the integrity result has expired")
        components = tuple(row["validated_components"])
        missing = sorted(set(msg.required_components) - set(components))
        if missing:
            # 004 c4 s3 NOTE: the new SHO requires components the old validation did not cover
            return miss(f"components not validated: {', '.join(missing)}")
        return IntegrityInquiryResponse(sender=self.address, recipient=msg.sender, platform_id=msg.platform_id,
                                        available=True, passed=bool(row["passed"]),
                                        validated_components=components, pcr_digest=row["pcr_digest"],
                                        validated_at=row["validated_at"], expires_at=row["expires_at"])
