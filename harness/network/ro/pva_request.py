"""The RO requesting the PVA on an SHO's behalf (seed 004, 3rd change, step 8: "The SHO requests
a PVA (or requests the RO to request the PVA)"): a topology option. The SHO sends its challenge
and validation requests to the RO; the RO sends them on to the PVA as its own and hands the PVA's
answers back to the SHO, so the trace shows SHO -> RO -> PVA."""

from __future__ import annotations

import dataclasses

from mcim_hil.network.bus import Bus, Entity, Refused
from mcim_hil.network.messages import (
    Challenge,
    ChallengeRequest,
    Message,
    ValidationRequest,
    ValidationResultMessage,
)


class PvaRequest(Entity):
    """The RO's function that requests the PVA for an SHO it serves."""

    def __init__(self, bus: Bus, *, address: str, pva_address: str, sho_addresses: list[str]) -> None:
        super().__init__(bus, address)
        self.pva_address = pva_address
        self.sho_addresses = list(sho_addresses)
        self.relayed: list[tuple[str, str]] = []   # (SHO, message kind) the RO requested the PVA for
        self.on(ChallengeRequest, lambda msg: self._for_sho(msg, Challenge))
        self.on(ValidationRequest, lambda msg: self._for_sho(msg, ValidationResultMessage))

    def _for_sho(self, msg: Message, answer: type[Message]) -> Message:
        if msg.sender not in self.sho_addresses:
            raise Refused(self.address, f"{msg.kind} to the PVA", f"{msg.sender} is not an SHO this RO serves")
        reply = self.request(dataclasses.replace(msg, sender=self.address, recipient=self.pva_address), answer)
        self.relayed.append((msg.sender, msg.kind))
        return dataclasses.replace(reply, sender=self.address, recipient=msg.sender)
