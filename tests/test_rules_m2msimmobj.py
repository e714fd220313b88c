"""The M2MSIMMobj reader's rules that a well-built object never trips, each pinned by its reason:
size limit, node formats, unknown nodes, version, PCR bank, expiry instant, root element, a node
with two formats, interior nodes known by their children."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from mcim_hil.network import m2msimmobj
from mcim_hil.network.m2msimmobj import MAX_DOCUMENT_BYTES, ROOT, M2MSIMMobjError
from test_m2msimmobj import NOT_AFTER, SHO_KEY, document


def parse(xml: bytes, **kwargs: object) -> m2msimmobj.M2MSIMMobj:
    return m2msimmobj.parse(xml, SHO_KEY.public_key(), **kwargs)


def signed_with(monkeypatch: pytest.MonkeyPatch, **leaves: tuple[str, str]) -> bytes:
    """A document the SHO signed with some leaves changed or added (its signature is valid)."""
    original = m2msimmobj._leaves_of

    def changed(*args: object, **kwargs: object) -> dict[str, tuple[str, str]]:
        out = original(*args, **kwargs)
        out.update({f"{ROOT}/{path}": value for path, value in leaves.items()})
        return out

    with monkeypatch.context() as patch:
        patch.setattr(m2msimmobj, "_leaves_of", changed)
        return document()


def test_a_document_over_the_size_limit_is_refused_before_parsing() -> None:
    with pytest.raises(M2MSIMMobjError, match=f"^document of {MAX_DOCUMENT_BYTES + 1} bytes exceeds"):
        parse(b" " * (MAX_DOCUMENT_BYTES + 1))
    with pytest.raises(M2MSIMMobjError, match="^document is truncated or not well-formed"):
        parse(b" " * MAX_DOCUMENT_BYTES)  # at the limit: read, and refused for what it is


def test_a_node_with_another_format_than_its_definition_is_refused() -> None:
    xml = re.sub(rb"(<NodeName>Version</NodeName>\s*<RTProperties>\s*<Format>\s*)<chr\s*/>", rb"\1<b64 />",
                 document())
    with pytest.raises(M2MSIMMobjError, match=f"^node {ROOT}/Version has format b64, expected chr$"):
        parse(xml)


def test_a_node_the_definition_does_not_have_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    xml = signed_with(monkeypatch, **{"Target/Extra": ("chr", "x")})
    with pytest.raises(M2MSIMMobjError, match=f"^unexpected node {ROOT}/Target/Extra$"):
        parse(xml)


def test_another_version_is_refused_even_when_signed(monkeypatch: pytest.MonkeyPatch) -> None:
    xml = signed_with(monkeypatch, Version=("chr", "9.9"))
    with pytest.raises(M2MSIMMobjError, match="^M2MSIMMobj version '9.9' not supported$"):
        parse(xml)


def test_another_pcr_bank_is_refused_even_when_signed(monkeypatch: pytest.MonkeyPatch) -> None:
    xml = signed_with(monkeypatch, **{"Target/PCRBank": ("chr", "sha1")})
    with pytest.raises(M2MSIMMobjError, match="^PCR bank 'sha1' not supported$"):
        parse(xml)


def test_the_object_is_valid_up_to_its_not_after_instant() -> None:
    xml = document()
    assert parse(xml, at=NOT_AFTER).not_after == NOT_AFTER
    with pytest.raises(M2MSIMMobjError, match="^object expired at "):
        parse(xml, at=NOT_AFTER + dt.timedelta(seconds=1))


def test_a_root_element_other_than_mgmttree_is_refused() -> None:
    xml = document().replace(b"<MgmtTree", b"<Node", 1).replace(b"</MgmtTree>", b"</Node>")
    with pytest.raises(M2MSIMMobjError, match="^root element is <Node>, not <MgmtTree>$"):
        parse(xml)


def test_a_node_with_two_formats_is_refused() -> None:
    xml = re.sub(rb"(<NodeName>Version</NodeName>\s*<RTProperties>\s*<Format>\s*<chr\s*/>)", rb"\1<b64 />",
                 document())
    with pytest.raises(M2MSIMMobjError, match="^a node declares two formats$"):
        parse(xml)


def test_an_interior_node_without_a_format_is_known_by_its_children() -> None:
    xml = re.sub(rb"(<NodeName>Target</NodeName>\s*)<RTProperties>\s*<Format>\s*<node\s*/>\s*</Format>\s*"
                 rb"</RTProperties>", rb"\1", document())
    assert b"<NodeName>Target</NodeName><Node>" in xml.replace(b"\n", b"").replace(b" ", b"")
    assert parse(xml).sealed.pcr_selection == (8, 9, 10)


def test_a_node_without_a_name_is_refused() -> None:
    xml = document().replace(b"<NodeName>PCRBank</NodeName>", b"", 1)
    with pytest.raises(M2MSIMMobjError, match=f"^a node under {ROOT}/Target has no NodeName$"):
        parse(xml)


def test_a_node_that_appears_twice_is_refused() -> None:
    xml = document()
    version = re.search(rb"<Node>\s*<NodeName>Version</NodeName>.*?</Node>", xml, re.S).group(0)
    with pytest.raises(M2MSIMMobjError, match=f"^node {ROOT}/Version appears twice$"):
        parse(xml.replace(version, version + version, 1))


def test_the_root_node_without_a_format_is_still_interior() -> None:
    xml = re.sub(rb"(<NodeName>" + ROOT.encode() + rb"</NodeName>\s*<RTProperties>\s*)<Format>\s*<node\s*/>\s*"
                 rb"</Format>", rb"\1", document())
    assert parse(xml).sealed.pcr_selection == (8, 9, 10)


def test_stray_names_and_values_outside_a_node_do_not_crash_the_reader() -> None:
    xml = document().replace(b"<VerDTD>", b"<NodeName>stray</NodeName><Value>stray</Value><VerDTD>", 1)
    assert parse(xml).sealed.pcr_selection == (8, 9, 10)


def test_a_value_inside_rtproperties_is_not_the_node_value() -> None:
    xml = re.sub(rb"(<NodeName>PCRBank</NodeName>.*?</Value>)", rb"\1<RTProperties><Value>sha1</Value></RTProperties>",
                 document(), count=1, flags=re.S)
    assert parse(xml).sealed.pcr_selection == (8, 9, 10)  # the bank is still the signed sha256


EMPTY_INTERIOR = b"<Node><NodeName>Extra</NodeName><RTProperties><Format><node /></Format></RTProperties></Node>"


def _under_root(xml: bytes, inserted: bytes) -> bytes:
    return re.sub(rb"(<NodeName>" + ROOT.encode() + rb"</NodeName>\s*<RTProperties>.*?</RTProperties>)",
                  rb"\1" + inserted, xml, count=1, flags=re.S)


def test_an_empty_interior_node_carries_nothing_and_is_read_past() -> None:
    assert parse(_under_root(document(), EMPTY_INTERIOR)).sealed.pcr_selection == (8, 9, 10)


def test_an_interior_node_that_appears_twice_is_refused() -> None:
    with pytest.raises(M2MSIMMobjError, match=f"^node {ROOT}/Extra appears twice$"):
        parse(_under_root(document(), EMPTY_INTERIOR + EMPTY_INTERIOR))


def test_a_leaf_without_its_value_element_is_an_empty_leaf_and_breaks_the_signature() -> None:
    xml = re.sub(rb"(<NodeName>Version</NodeName>\s*<RTProperties>.*?</RTProperties>)\s*<Value>[^<]*</Value>",
                 rb"\1", document(), count=1, flags=re.S)
    with pytest.raises(M2MSIMMobjError, match="^integrity check failed"):
        parse(xml)


def test_a_leaf_without_a_format_is_chr_by_default() -> None:
    # OMA-TS-DM_TNDS: Format defaults to chr; Version is a chr leaf, so the object still reads
    xml = re.sub(rb"(<NodeName>Version</NodeName>\s*)<RTProperties>\s*<Format>\s*<chr\s*/>\s*</Format>\s*"
                 rb"</RTProperties>", rb"\1", document())
    assert b"<NodeName>Version</NodeName><Value>" in xml.replace(b"\n", b"").replace(b" ", b"")
    assert parse(xml).not_after == NOT_AFTER


def test_an_interior_node_without_a_name_is_refused_after_its_children() -> None:
    xml = document().replace(b"<NodeName>Target</NodeName>", b"", 1)
    with pytest.raises(M2MSIMMobjError, match=f"^a node under {ROOT} has no NodeName$"):
        parse(xml)


def _version_properties(xml: bytes, properties: bytes) -> bytes:
    return re.sub(rb"(<NodeName>Version</NodeName>\s*)<RTProperties>.*?</RTProperties>", rb"\1" + properties,
                  xml, count=1, flags=re.S)


def test_only_a_format_name_inside_format_sets_the_format() -> None:
    xml = _version_properties(document(), b"<RTProperties><Format><DDFName /></Format></RTProperties>")
    assert parse(xml).not_after == NOT_AFTER  # no format given: chr


def test_a_format_name_outside_format_is_not_a_format() -> None:
    xml = _version_properties(document(), b"<RTProperties><b64 /><Format><chr /></Format></RTProperties>")
    assert parse(xml).not_after == NOT_AFTER


def test_a_format_outside_any_node_does_not_crash_the_reader() -> None:
    xml = document().replace(b"</VerDTD>", b"</VerDTD><RTProperties><Format><chr /></Format></RTProperties>", 1)
    assert parse(xml).not_after == NOT_AFTER


def test_a_leaf_declared_interior_is_refused_by_its_format() -> None:
    xml = _version_properties(document(), b"<RTProperties><Format><node /></Format></RTProperties>")
    with pytest.raises(M2MSIMMobjError, match=f"^node {ROOT}/Version has format node, expected chr$"):
        parse(xml)


def test_the_text_of_an_element_inside_a_name_or_value_is_not_part_of_it() -> None:
    # markup where the TNDS DTD has text only: the name and the value are their own text, so the
    # signed content reads the same and the object still verifies
    xml = document().replace(b"<NodeName>Version</NodeName>", b"<NodeName><Title>Old</Title>Version</NodeName>", 1)
    xml = re.sub(rb"(<NodeName>PCRBank</NodeName>.*?<Value>)", rb"\1<Title>sha1</Title>", xml, count=1, flags=re.S)
    assert b"<Value><Title>sha1</Title>sha256</Value>" in xml
    assert parse(xml).sealed.pcr_selection == (8, 9, 10)
