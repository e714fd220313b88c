"""The M2ME subscriber (the owner): contacts the new SHO and instructs the M2ME (004 c4 s1-s2,
c4p s1-s2). Its public key is registered in the M2ME at manufacture; each instruction it sends
is signed, names the target SHO and carries a fresh nonce, so the M2ME can refuse an unsigned,
replayed or foreign one.
"""

from __future__ import annotations

import dataclasses
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mcim_hil.network.messages import ReprovisioningInstruction

SUBSCRIBER_ADDRESS = "owner.m2me-subscriber.example"
NONCE_BYTES = 16


class M2meSubscriber:
    def __init__(self, address: str = SUBSCRIBER_ADDRESS) -> None:
        self.address = address
        self._key = ec.generate_private_key(ec.SECP256R1())

    def __repr__(self) -> str:
        return f"M2meSubscriber({self.address})"

    @property
    def public_key(self) -> bytes:
        """DER SubjectPublicKeyInfo: what the M2MES registers in the M2ME at manufacture."""
        return self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)

    def instruction(self, *, m2me_address: str, pcid: str, new_sho_address: str, new_sho_verify_key: bytes,
                    pristine: bool = False) -> ReprovisioningInstruction:
        """A signed instruction with a fresh nonce."""
        unsigned = ReprovisioningInstruction(sender=self.address, recipient=m2me_address, pcid=pcid,
                                             new_sho_address=new_sho_address, new_sho_verify_key=new_sho_verify_key,
                                             pristine=pristine, nonce=os.urandom(NONCE_BYTES))
        return self.sign(unsigned)

    def sign(self, instruction: ReprovisioningInstruction) -> ReprovisioningInstruction:
        signature = self._key.sign(instruction.signed_bytes(), ec.ECDSA(hashes.SHA256()))
        return dataclasses.replace(instruction, signature=signature)
