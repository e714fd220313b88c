"""The M2MSIMMobj: the OMA DM management object that carries the sealed MCIM to the M2ME
(TR 33.812 5.1.3.7.1 steps 16-19), serialised as a TNDS document (OMA-TS-DM_TNDS:
MgmtTree / Node / NodeName / RTProperties / Format / Value).

Tree (leaf formats in brackets):

    M2MSIMMobj
      Version [chr]
      WrappedMCIM/  Public, Duplicate, Seed, EncryptionKey, Envelope   [b64]
      Target/       StorageKeyName [b64], PCRBank [chr], PCRSelection [chr], PolicyDigest [b64]
      Lifetime/     NotAfter [chr, ISO 8601 UTC]
      Metadata/     <key> [chr] ...
      Integrity/    Algorithm [chr], Signature [b64]

Integrity: the SHO signs a canonical encoding of every leaf except Integrity/Signature
(sorted by path; path, format and value each length-prefixed), so node order and XML
whitespace do not matter but any value, any node added or removed does. The M2ME verifies
with the SHO public key it got in the bootstrap. ``parse`` checks everything (well-formed,
no DOCTYPE/entities, every node present, signature, formats, lifetime) before it returns,
so nothing can be installed from a refused object.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from xml.parsers import expat

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from mcim_hil.network import pki
from mcim_hil.network.mcim import SealedObject

ROOT = "M2MSIMMobj"
FORMAT_VERSION = "1"
DDF_NAME = "urn:mcim-hil:mo:M2MSIMMobj:1.0"
TNDS_NAMESPACE = "syncml:dmddf1.2"   # OMA-TS-DM_TNDS: MgmtTree xmlns
VER_DTD = "1.2"
MAX_DOCUMENT_BYTES = 256 * 1024
DEFAULT_LIFETIME = dt.timedelta(days=1)
_CANONICAL_HEADER = b"mcim-hil M2MSIMMobj canonical v1\0"
_SIGNATURE_PATH = f"{ROOT}/Integrity/Signature"
_METADATA = f"{ROOT}/Metadata"
_NODE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

# required leaves and their format
_LEAVES: dict[str, str] = {
    f"{ROOT}/Version": "chr",
    f"{ROOT}/WrappedMCIM/Public": "b64",
    f"{ROOT}/WrappedMCIM/Duplicate": "b64",
    f"{ROOT}/WrappedMCIM/Seed": "b64",
    f"{ROOT}/WrappedMCIM/EncryptionKey": "b64",
    f"{ROOT}/WrappedMCIM/Envelope": "b64",
    f"{ROOT}/Target/StorageKeyName": "b64",
    f"{ROOT}/Target/PCRBank": "chr",
    f"{ROOT}/Target/PCRSelection": "chr",
    f"{ROOT}/Target/PolicyDigest": "b64",
    f"{ROOT}/Lifetime/NotAfter": "chr",
    f"{ROOT}/Integrity/Algorithm": "chr",
    _SIGNATURE_PATH: "b64",
}
_INTERIOR = {ROOT, f"{ROOT}/WrappedMCIM", f"{ROOT}/Target", f"{ROOT}/Lifetime", _METADATA, f"{ROOT}/Integrity"}
_ELEMENTS = {"MgmtTree", "VerDTD", "Man", "Mod", "Node", "NodeName", "Path", "RTProperties", "Format",
             "Type", "DDFName", "MIME", "Value", "ACL", "Title", "TStamp", "VerNo", "Size", "Name",
             "b64", "chr", "node", "bin", "bool", "int", "xml", "date", "time", "float", "null"}
_FORMATS = {"b64", "chr", "node", "bin", "bool", "int", "xml", "date", "time", "float", "null"}


class M2MSIMMobjError(Exception):
    """The object is truncated, malformed, incomplete, altered or expired: do not install."""


@dataclass(frozen=True)
class M2MSIMMobj:
    """A verified M2MSIMMobj: what the M2ME imports (``sealed``) and decrypts (``mcim_envelope``)."""
    sealed: SealedObject
    mcim_envelope: bytes
    metadata: dict[str, str] = field(default_factory=dict)
    not_after: dt.datetime | None = None
    signature_algorithm: str = ""

    def __repr__(self) -> str:
        return f"M2MSIMMobj({self.sealed!r}, metadata={self.metadata}, not_after={self.not_after})"


# --- building ----------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _leaves_of(sealed: SealedObject, mcim_envelope: bytes, metadata: Mapping[str, str],
               not_after: dt.datetime, algorithm: str) -> dict[str, tuple[str, str]]:
    leaves = {
        f"{ROOT}/Version": ("chr", FORMAT_VERSION),
        f"{ROOT}/WrappedMCIM/Public": ("b64", _b64(sealed.public)),
        f"{ROOT}/WrappedMCIM/Duplicate": ("b64", _b64(sealed.duplicate)),
        f"{ROOT}/WrappedMCIM/Seed": ("b64", _b64(sealed.seed)),
        f"{ROOT}/WrappedMCIM/EncryptionKey": ("b64", _b64(sealed.encryption_key)),
        f"{ROOT}/WrappedMCIM/Envelope": ("b64", _b64(mcim_envelope)),
        f"{ROOT}/Target/StorageKeyName": ("b64", _b64(sealed.storage_key_name)),
        f"{ROOT}/Target/PCRBank": ("chr", "sha256"),
        f"{ROOT}/Target/PCRSelection": ("chr", ",".join(map(str, sealed.pcr_selection))),
        f"{ROOT}/Target/PolicyDigest": ("b64", _b64(sealed.policy_digest)),
        f"{ROOT}/Lifetime/NotAfter": ("chr", not_after.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")),
        f"{ROOT}/Integrity/Algorithm": ("chr", algorithm),
    }
    for key, value in metadata.items():
        if not _NODE_NAME.fullmatch(key):
            raise M2MSIMMobjError(f"metadata key {key!r} is not a valid node name")
        leaves[f"{_METADATA}/{key}"] = ("chr", str(value))
    return leaves


def canonical_content(leaves: Mapping[str, tuple[str, str]]) -> bytes:
    """What the integrity signature covers: every leaf but the signature, sorted by path."""
    out = bytearray(_CANONICAL_HEADER)
    for path in sorted(leaves):
        if path == _SIGNATURE_PATH:
            continue
        fmt, value = leaves[path]
        for part in (path, fmt, value):
            raw = part.encode("utf-8")
            out += struct.pack(">I", len(raw)) + raw
    return bytes(out)


def build(sealed: SealedObject, *, mcim_envelope: bytes, metadata: Mapping[str, str], signer: Any,
          not_after: dt.datetime | None = None) -> bytes:
    """The TNDS XML of an M2MSIMMobj, signed by ``signer`` (the SHO's private key, or a
    ``pki.CertificateAuthority``). ``not_after`` defaults to one day from now."""
    not_after = not_after or pki.utc_now() + DEFAULT_LIFETIME
    if isinstance(signer, pki.CertificateAuthority):
        algorithm, sign = signer.signature_algorithm, signer.sign
    else:
        algorithm, sign = pki.signature_algorithm_name(signer), partial(pki.sign_bytes, signer)
    leaves = _leaves_of(sealed, mcim_envelope, metadata, not_after, algorithm)
    leaves[_SIGNATURE_PATH] = ("b64", _b64(sign(canonical_content(leaves))))

    tree = ET.Element("MgmtTree", {"xmlns": TNDS_NAMESPACE})
    ET.SubElement(tree, "VerDTD").text = VER_DTD
    nodes: dict[str, ET.Element] = {}

    def node(path: str) -> ET.Element:
        if path in nodes:
            return nodes[path]
        parent_path, _, name = path.rpartition("/")
        parent = node(parent_path) if parent_path else tree
        element = ET.SubElement(parent, "Node")
        ET.SubElement(element, "NodeName").text = name
        properties = ET.SubElement(element, "RTProperties")
        ET.SubElement(ET.SubElement(properties, "Format"), "node")
        if path == ROOT:
            ET.SubElement(ET.SubElement(properties, "Type"), "DDFName").text = DDF_NAME
        nodes[path] = element
        return element

    for interior in sorted(_INTERIOR):
        if interior != _METADATA or metadata:
            node(interior)
    for path in sorted(leaves):  # sorted: parents exist, document is deterministic
        fmt, value = leaves[path]
        parent_path, _, name = path.rpartition("/")
        element = ET.SubElement(node(parent_path), "Node")
        ET.SubElement(element, "NodeName").text = name
        ET.SubElement(ET.SubElement(ET.SubElement(element, "RTProperties"), "Format"), fmt)
        ET.SubElement(element, "Value").text = value
    return ET.tostring(tree, encoding="utf-8", xml_declaration=True)


# --- parsing -----------------------------------------------------------------------------

class _TndsReader:
    """A strict expat reader: no DOCTYPE, no entity declarations, no unknown elements;
    collects {path: (format, value)} for every Node."""

    def __init__(self) -> None:
        self.leaves: dict[str, tuple[str, str]] = {}
        self.interior: set[str] = set()
        self._stack: list[str] = []
        self._text: list[str] = []
        self._nodes: list[dict[str, Any]] = []  # the open Node elements

    def _refuse(self, *_: Any) -> None:
        raise M2MSIMMobjError("document declares a DOCTYPE or entities: refused")

    def parse(self, data: bytes) -> None:
        parser = expat.ParserCreate(namespace_separator=None)
        parser.StartDoctypeDeclHandler = self._refuse
        parser.EntityDeclHandler = self._refuse
        parser.UnparsedEntityDeclHandler = self._refuse
        parser.ExternalEntityRefHandler = self._refuse
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text.append
        parser.Parse(data, True)

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        if name not in _ELEMENTS:
            raise M2MSIMMobjError(f"unexpected element <{name}>")
        if not self._stack and name != "MgmtTree":
            raise M2MSIMMobjError(f"root element is <{name}>, not <MgmtTree>")
        if name == "Node":
            self._nodes.append({"name": None, "format": None, "value": None, "children": 0})
            if len(self._nodes) > 1:
                self._nodes[-2]["children"] += 1
        elif name in _FORMATS and self._stack[-1:] == ["Format"] and self._nodes:
            if self._nodes[-1]["format"] is not None:
                raise M2MSIMMobjError("a node declares two formats")
            self._nodes[-1]["format"] = name
        self._stack.append(name)
        self._text.clear()

    def _end(self, name: str) -> None:
        text = "".join(self._text)
        self._text.clear()
        self._stack.pop()
        if name == "NodeName" and self._nodes:
            self._nodes[-1]["name"] = text.strip()
        elif name == "Value" and self._nodes and self._stack[-1:] == ["Node"]:
            self._nodes[-1]["value"] = text
        elif name == "Node":
            node = self._nodes.pop()
            path = "/".join([n["name"] or "" for n in self._nodes] + [node["name"] or ""])
            if not node["name"]:
                raise M2MSIMMobjError(f"a node under {path.rpartition('/')[0] or 'the root'} has no NodeName")
            if path in self.leaves or path in self.interior:
                raise M2MSIMMobjError(f"node {path} appears twice")
            if node["value"] is None and (node["children"] or node["format"] == "node"):
                self.interior.add(path)
            else:
                self.leaves[path] = (node["format"] or "chr", node["value"] or "")


def _decode_b64(path: str, value: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise M2MSIMMobjError(f"{path} is not valid base64") from exc


def parse(xml: bytes, verify_key: Any, *, at: dt.datetime | None = None) -> M2MSIMMobj:
    """Check and decode an M2MSIMMobj. ``verify_key``: the SHO's public key (or its
    certificate). Raises M2MSIMMobjError naming what is wrong."""
    if len(xml) > MAX_DOCUMENT_BYTES:
        raise M2MSIMMobjError(f"document of {len(xml)} bytes exceeds {MAX_DOCUMENT_BYTES}")
    reader = _TndsReader()
    try:
        reader.parse(xml)
    except expat.ExpatError as exc:
        raise M2MSIMMobjError(f"document is truncated or not well-formed XML ({expat.ErrorString(exc.code)} "
                              f"at line {exc.lineno} column {exc.offset})") from None
    except (LookupError, ValueError) as exc:   # the XML declaration names an encoding expat cannot read
        raise M2MSIMMobjError(f"document declares an encoding that cannot be read ({exc})") from None
    leaves = reader.leaves
    for path, fmt in _LEAVES.items():
        if path not in leaves:
            raise M2MSIMMobjError(f"node {path} is missing")
        if leaves[path][0] != fmt:
            raise M2MSIMMobjError(f"node {path} has format {leaves[path][0]}, expected {fmt}")
    unexpected = [p for p in leaves if p not in _LEAVES and not p.startswith(_METADATA + "/")]
    if unexpected:
        raise M2MSIMMobjError(f"unexpected node {sorted(unexpected)[0]}")

    public_key = verify_key.public_key() if isinstance(verify_key, x509.Certificate) else verify_key
    algorithm = leaves[f"{ROOT}/Integrity/Algorithm"][1]
    expected_algorithm = pki.signature_algorithm_name(public_key)
    if algorithm != expected_algorithm:
        raise M2MSIMMobjError(f"integrity algorithm {algorithm!r} is not the SHO key's {expected_algorithm!r}")
    signature = _decode_b64(_SIGNATURE_PATH, leaves[_SIGNATURE_PATH][1])
    try:
        pki.verify_bytes(public_key, signature, canonical_content(leaves))
    except InvalidSignature:
        raise M2MSIMMobjError("integrity check failed: the object was altered or not signed by the SHO") from None

    version = leaves[f"{ROOT}/Version"][1]
    if version != FORMAT_VERSION:
        raise M2MSIMMobjError(f"M2MSIMMobj version {version!r} not supported")
    value = {path: leaves[path][1] for path in leaves}
    raw = {path: _decode_b64(path, value[path]) for path, fmt in _LEAVES.items() if fmt == "b64"}
    if value[f"{ROOT}/Target/PCRBank"] != "sha256":
        raise M2MSIMMobjError(f"PCR bank {value[f'{ROOT}/Target/PCRBank']!r} not supported")
    try:
        pcrs = tuple(int(p) for p in value[f"{ROOT}/Target/PCRSelection"].split(","))
        not_after = dt.datetime.strptime(value[f"{ROOT}/Lifetime/NotAfter"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.timezone.utc)
    except ValueError as exc:
        raise M2MSIMMobjError(f"Target/PCRSelection or Lifetime/NotAfter does not decode ({exc})") from None
    if (at or pki.utc_now()) > not_after:
        raise M2MSIMMobjError(f"object expired at {not_after.isoformat()}")
    sealed = SealedObject(public=raw[f"{ROOT}/WrappedMCIM/Public"], duplicate=raw[f"{ROOT}/WrappedMCIM/Duplicate"],
                          seed=raw[f"{ROOT}/WrappedMCIM/Seed"],
                          encryption_key=raw[f"{ROOT}/WrappedMCIM/EncryptionKey"],
                          storage_key_name=raw[f"{ROOT}/Target/StorageKeyName"], pcr_selection=pcrs,
                          policy_digest=raw[f"{ROOT}/Target/PolicyDigest"])
    metadata = {path[len(_METADATA) + 1:]: value[path] for path in sorted(leaves) if path.startswith(_METADATA + "/")}
    return M2MSIMMobj(sealed=sealed, mcim_envelope=raw[f"{ROOT}/WrappedMCIM/Envelope"], metadata=metadata,
                      not_after=not_after, signature_algorithm=algorithm)
