"""The M2MSIMMobj as TNDS XML: built by the SHO, checked whole by the M2ME before anything
is installed (truncated, missing node, altered value, DOCTYPE, wrong signer, expired)."""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import xml.etree.ElementTree as ET

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mcim_hil.network import m2msimmobj, pki
from mcim_hil.network.m2msimmobj import M2MSIMMobjError
from mcim_hil.network.mcim import SealedObject

SHO_KEY = ec.generate_private_key(ec.SECP256R1())
SEALED = SealedObject(public=os.urandom(90), duplicate=os.urandom(120), seed=os.urandom(70), encryption_key=b"",
                      storage_key_name=b"\x00\x0b" + os.urandom(32), pcr_selection=(8, 9, 10),
                      policy_digest=os.urandom(32))
ENVELOPE = os.urandom(200)
METADATA = {"IMSI": "001010123456789", "SHO": "sho.example", "MCIMVersion": "3"}
NOT_AFTER = pki.utc_now().replace(microsecond=0) + dt.timedelta(hours=2)


def document(**kwargs: object) -> bytes:
    args: dict[str, object] = dict(mcim_envelope=ENVELOPE, metadata=METADATA, signer=SHO_KEY, not_after=NOT_AFTER)
    args.update(kwargs)
    return m2msimmobj.build(SEALED, **args)  # type: ignore[arg-type]


def plain_tree(xml: bytes) -> ET.Element:
    """The document as an ElementTree without the TNDS default namespace (plain tag names)."""
    return ET.fromstring(xml.replace(f' xmlns="{m2msimmobj.TNDS_NAMESPACE}"'.encode(), b""))


def test_roundtrip() -> None:
    xml = document()
    assert xml.startswith(b"<?xml") and b"<MgmtTree" in xml and b"DOCTYPE" not in xml
    parsed = m2msimmobj.parse(xml, SHO_KEY.public_key())
    assert parsed.sealed == SEALED
    assert parsed.mcim_envelope == ENVELOPE
    assert parsed.metadata == METADATA
    assert parsed.not_after == NOT_AFTER
    assert parsed.signature_algorithm == "ecdsa-sha256"


def test_tnds_shape() -> None:
    assert f'<MgmtTree xmlns="{m2msimmobj.TNDS_NAMESPACE}">'.encode() in document()
    tree = plain_tree(document())
    assert tree.tag == "MgmtTree" and tree.findtext("VerDTD") == "1.2"
    root = tree.find("Node")
    assert root is not None and root.findtext("NodeName") == "M2MSIMMobj"
    assert root.findtext("RTProperties/Type/DDFName") == m2msimmobj.DDF_NAME
    wrapped = [n for n in root.findall("Node") if n.findtext("NodeName") == "WrappedMCIM"][0]
    public = [n for n in wrapped.findall("Node") if n.findtext("NodeName") == "Public"][0]
    assert public.find("RTProperties/Format/b64") is not None
    assert base64.b64decode(public.findtext("Value") or "") == SEALED.public


def test_node_order_and_whitespace_do_not_matter() -> None:
    tree = plain_tree(document())
    root = tree.find("Node")
    assert root is not None
    children = root.findall("Node")
    for child in children:
        root.remove(child)
    for child in reversed(children):
        root.append(child)
    ET.indent(tree)
    shuffled = ET.tostring(tree, encoding="utf-8")
    assert m2msimmobj.parse(shuffled, SHO_KEY.public_key()).sealed == SEALED


def test_truncated_document_is_refused() -> None:
    xml = document()
    for cut in (len(xml) // 2, len(xml) - 5):
        with pytest.raises(M2MSIMMobjError, match="truncated or not well-formed"):
            m2msimmobj.parse(xml[:cut], SHO_KEY.public_key())


def test_missing_node_is_refused_by_name() -> None:
    xml = document().decode()
    pattern = r"<Node><NodeName>Seed</NodeName>.*?</Node>"
    assert re.search(pattern, xml)
    with pytest.raises(M2MSIMMobjError, match="node M2MSIMMobj/WrappedMCIM/Seed is missing"):
        m2msimmobj.parse(re.sub(pattern, "", xml).encode(), SHO_KEY.public_key())


def test_altered_value_fails_the_integrity_check() -> None:
    xml = document()
    other = base64.b64encode(os.urandom(32)).decode()
    target = base64.b64encode(SEALED.policy_digest).decode()
    with pytest.raises(M2MSIMMobjError, match="integrity check failed"):
        m2msimmobj.parse(xml.replace(target.encode(), other.encode()), SHO_KEY.public_key())
    with pytest.raises(M2MSIMMobjError, match="integrity check failed"):
        m2msimmobj.parse(xml.replace(b"sho.example", b"evil.example"), SHO_KEY.public_key())
    with pytest.raises(M2MSIMMobjError, match="integrity check failed"):
        m2msimmobj.parse(xml.replace(b">8,9,10<", b">8,9<"), SHO_KEY.public_key())


def test_added_metadata_node_fails_the_integrity_check() -> None:
    xml = document().decode()
    extra = ("<Node><NodeName>Extra</NodeName><RTProperties><Format><chr /></Format></RTProperties>"
             "<Value>x</Value></Node>")
    xml = xml.replace("<Node><NodeName>IMSI</NodeName>", extra + "<Node><NodeName>IMSI</NodeName>", 1)
    with pytest.raises(M2MSIMMobjError, match="integrity check failed"):
        m2msimmobj.parse(xml.encode(), SHO_KEY.public_key())


def test_signed_by_someone_else_is_refused() -> None:
    with pytest.raises(M2MSIMMobjError, match="integrity check failed"):
        m2msimmobj.parse(document(signer=ec.generate_private_key(ec.SECP256R1())), SHO_KEY.public_key())
    with pytest.raises(M2MSIMMobjError, match="is not the SHO key's"):
        m2msimmobj.parse(document(signer=pki.generate_private_key("ed25519")), SHO_KEY.public_key())


def test_sho_certificate_works_as_verify_key() -> None:
    ca = pki.CertificateAuthority.create("SHO", key="rsa-2048")
    parsed = m2msimmobj.parse(document(signer=ca), ca.certificate)
    assert parsed.signature_algorithm == "rsa-pss-sha256"


def test_doctype_and_entities_are_refused() -> None:
    xml = document().decode()
    head, body = xml.split("?>", 1)
    bomb = head + '?><!DOCTYPE MgmtTree [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>' + body
    with pytest.raises(M2MSIMMobjError, match="DOCTYPE"):
        m2msimmobj.parse(bomb.encode(), SHO_KEY.public_key())
    external = head + '?><!DOCTYPE MgmtTree SYSTEM "file:///etc/passwd">' + body
    with pytest.raises(M2MSIMMobjError, match="DOCTYPE"):
        m2msimmobj.parse(external.encode(), SHO_KEY.public_key())
    utf16 = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE MgmtTree SYSTEM "x">' + body).encode("utf-16")
    with pytest.raises(M2MSIMMobjError, match="DOCTYPE"):
        m2msimmobj.parse(utf16, SHO_KEY.public_key())


def test_expired_object_is_refused() -> None:
    xml = document(not_after=pki.utc_now() - dt.timedelta(seconds=1))
    with pytest.raises(M2MSIMMobjError, match="expired"):
        m2msimmobj.parse(xml, SHO_KEY.public_key())


def test_foreign_root_and_bad_metadata_key() -> None:
    with pytest.raises(M2MSIMMobjError, match="unexpected element <html>"):
        m2msimmobj.parse(b"<html></html>", SHO_KEY.public_key())
    with pytest.raises(M2MSIMMobjError, match="not a valid node name"):
        document(metadata={"a/b": "x"})
