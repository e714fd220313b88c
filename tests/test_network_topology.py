"""Topology options (the seeds' alternatives), the bus and the store."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from mcim_hil.aka.auc import AuthenticationVector
from mcim_hil.network.attestation import Evidence, ValidationResult
from mcim_hil.network.bus import Bus, Entity, NetworkError, UnexpectedMessage, UnknownAddress
from mcim_hil.network.factory import build_network
from mcim_hil.network.messages import ALL_MESSAGES, REDACTED, RegistryEntry, RegistryQuery
from mcim_hil.network.pki import CertificateAuthority
from mcim_hil.network.store import Store, StoreError
from mcim_hil.network.topology import Addresses, NetworkOptions, TopologyError
from mcim_hil.record import Record


@pytest.fixture(scope="module")
def ek_root() -> CertificateAuthority:
    return CertificateAuthority.create("test EK CA")


def test_separate_operators_by_default() -> None:
    at = Addresses.for_options(NetworkOptions())
    assert at.vno == "vno.vno-a.example"
    assert (at.icf, at.drf, at.dpf) == ("icf.ro-r.example", "drf.ro-r.example", "dpf.ro-r.example")
    assert at.sho == "sho.sho-b.example" and at.pva == "pva.pva-v.example"
    assert at.ivf == "ivf.pva.pva-v.example"  # the IVF is a logical function on the PVA


def test_each_flag_moves_the_functions_it_names() -> None:
    base = Addresses.for_options(NetworkOptions())
    colocated = Addresses.for_options(NetworkOptions(ro_colocated_with_vno=True))
    assert {colocated.operator_of(a) for a in (colocated.icf, colocated.drf, colocated.dpf)} == {"vno-a.example"}
    assert colocated.sho == base.sho and colocated.pva == base.pva
    hosted = Addresses.for_options(NetworkOptions(pva_dpf_hosted_by_sho=True))
    assert hosted.pva == "pva.sho-b.example" and hosted.dpf == "dpf.sho-b.example"
    assert hosted.icf == base.icf and hosted.drf == base.drf
    same = Addresses.for_options(NetworkOptions(vno_is_sho=True))
    assert same.operator_of(same.sho) == same.operator_of(same.vno) and same.sho != same.vno
    assert Addresses.for_options(NetworkOptions(ivf_host="osho")).ivf == "ivf.sho-b.example"
    assert Addresses.for_options(NetworkOptions(ivf_host="separate")).ivf == "ivf.ivp-i.example"


@pytest.mark.parametrize("flags", list(itertools.product([False, True], repeat=3)))
def test_every_combination_builds_with_distinct_addresses(flags: tuple[bool, bool, bool],
                                                          ek_root: CertificateAuthority) -> None:
    options = NetworkOptions(ro_colocated_with_vno=flags[0], pva_dpf_hosted_by_sho=flags[1], vno_is_sho=flags[2])
    net = build_network(options, ":memory:", Record(), ek_roots=[ek_root.certificate])
    entities = net.entities()
    assert len(entities) == 10  # every function its own entity, even when one operator hosts several
    assert sorted(entities) == net.bus.addresses()
    assert net.vno.route(net.options.ro_plmn + "0000000001") == net.addresses.icf
    assert net.vno.route(net.sho.plmn + "0000000001") == net.addresses.sho
    # behaviour stays: the DRF answers registry queries the same way wherever it lives
    reply = net.bus.request(RegistryQuery(sender=net.addresses.dpf, recipient=net.addresses.drf, pcid="1"))
    assert isinstance(reply, RegistryEntry) and not reply.found
    net.close()


def test_vno_is_sho_makes_the_provisioned_m2me_home(ek_root: CertificateAuthority) -> None:
    net = build_network({"vno_is_sho": True}, ":memory:", None, ek_roots=[ek_root.certificate])
    assert net.sho.plmn == net.vno.plmn == "00101"
    assert net.vno.is_home(net.sho.plmn + "0000000001")
    assert not net.vno.is_home(net.options.ro_plmn + "0000000001")


def test_bench_mapping_errors_name_the_key() -> None:
    with pytest.raises(TopologyError) as caught:
        NetworkOptions.from_mapping({"vno_is_sho": "yes", "colour": "blue", "ip_pool": "10.0.0.0/24"},
                                    source="lab_config/emulated.yaml: network")
    text = str(caught.value)
    assert "lab_config/emulated.yaml: network: unknown key 'colour'" in text
    assert "vno_is_sho must be true or false" in text
    with pytest.raises(TopologyError, match="ivf_host"):
        NetworkOptions.from_mapping({"ivf_host": "moon"})
    options = NetworkOptions.from_mapping({"pcr_selection": [8, 9], "ivf_lifetime_s": 60})
    assert options.pcr_selection == (8, 9) and options.ivf_lifetime_s == 60.0


def test_build_refuses_a_pva_without_pinned_ek_roots() -> None:
    with pytest.raises(ValueError, match="EK root"):
        build_network(NetworkOptions(), ":memory:", None)


def test_record_meta_names_the_topology(ek_root: CertificateAuthority, tmp_path: Path) -> None:
    record = Record()
    net = build_network({"pva_dpf_hosted_by_sho": True}, tmp_path, record, ek_roots=[ek_root.certificate])
    meta = record.meta["network"]
    assert meta["options"]["pva_dpf_hosted_by_sho"] is True
    assert meta["addresses"]["dpf"] == "dpf.sho-b.example"
    assert meta["store"] == str(tmp_path / "network.sqlite")
    net.close()


# -- the bus --------------------------------------------------------------------------------


class Echo(Entity):
    def __init__(self, bus: Bus, address: str) -> None:
        super().__init__(bus, address)
        self.on(RegistryQuery, self._answer)

    def _answer(self, msg: RegistryQuery) -> RegistryEntry:
        if msg.pcid == "boom":
            raise RuntimeError("registry down")
        return RegistryEntry(sender=self.address, recipient=msg.sender, pcid=msg.pcid, found=False)


def test_bus_records_requests_replies_and_failures_with_sender_and_recipient() -> None:
    record = Record()
    bus = Bus(record)
    Echo(bus, "drf")
    t0 = time.perf_counter()
    with record.step(9, "registry", ["DPF", "DRF"]):
        bus.request(RegistryQuery(sender="dpf", recipient="drf", pcid="1"))
        with pytest.raises(RuntimeError):
            bus.request(RegistryQuery(sender="dpf", recipient="drf", pcid="boom"))
    elapsed = time.perf_counter() - t0
    events = record.steps[0].events
    assert [(e["direction"], e["kind"], e["sender"], e["recipient"]) for e in events] == [
        ("request", "RegistryQuery", "dpf", "drf"),
        ("reply", "RegistryEntry", "drf", "dpf"),
        ("request", "RegistryQuery", "dpf", "drf"),
        ("error", "RegistryQuery", "drf", "dpf"),
    ]
    # a request has no duration of its own; its reply or failure carries the round trip, in seconds
    assert events[0]["duration_s"] is None and 0 < events[1]["duration_s"] <= elapsed
    assert 0 < events[3]["duration_s"] <= elapsed and events[3]["fields"]["error"] == "RuntimeError: registry down"


def test_bus_refuses_unknown_addresses_duplicates_and_unhandled_kinds() -> None:
    bus = Bus()
    Echo(bus, "drf")
    with pytest.raises(UnknownAddress, match="nowhere"):
        bus.request(RegistryQuery(sender="dpf", recipient="nowhere", pcid="1"))
    with pytest.raises(NetworkError, match="already registered"):
        Echo(bus, "drf")
    with pytest.raises(UnexpectedMessage, match="no handler for RegistryEntry"):
        bus.request(RegistryEntry(sender="dpf", recipient="drf", pcid="1", found=True))


def _marker_value(annotation: str, where: str) -> Any:
    """A value of the field's type that is unique to ``where`` (class.field), so it can be found."""
    tag = hashlib.sha256(where.encode()).digest()[:10]
    base = annotation.replace(" | None", "")
    if base == "str":
        return f"{where}-value"
    if base == "bytes":
        return tag
    values: dict[str, Any] = {
        "bool": True, "int": 7, "float": 1.5, "dict[str, str]": {"key": f"{where}-value"},
        "dict[str, bytes]": {"key": tag}, "tuple[int, ...]": (3, 5), "tuple[str, ...]": (f"{where}-value",),
        "tuple['AuthenticationVector', ...]": (AuthenticationVector(
            rand=tag + b"r" * 6, xres=tag + b"x", ck=tag + b"c" * 6, ik=tag + b"i" * 6, autn=tag + b"a" * 6),),
        "'Evidence'": Evidence(platform_id="p-1", ek_certificate=tag + b"1", ek_public=tag + b"2",
                               ak_public=tag + b"3", activation_proof=tag + b"4", quote_attest=tag + b"5",
                               quote_signature=tag + b"6", pcr_values={23: tag}, measurements=[], pfc=tag + b"7",
                               storage_key_public=tag + b"8", certify_attest=tag + b"9",
                               certify_signature=tag + b"0"),
        "'ValidationResult'": ValidationResult(passed=True, checks=[], validated_components=["c"],
                                               platform_id="p-1", pcr_digest=tag, storage_key_public=None),
    }
    assert base in values, f"{where}: no marker value for {annotation}"
    return values[base]


def test_every_message_class_records_and_reprs_its_fields_with_secrets_redacted() -> None:
    assert len(ALL_MESSAGES) > 40
    with_secrets = 0
    for cls in ALL_MESSAGES:
        fields = {f.name: _marker_value(str(f.type), f"{cls.__name__}.{f.name}")
                  for f in dataclasses.fields(cls) if f.name not in ("sender", "recipient")}
        msg = cls(sender="a.example", recipient="b.example", **fields)
        record, text = msg.to_record(), repr(msg)
        assert text.startswith(f"{cls.__name__}(a.example -> b.example: "), text
        assert set(record) == set(fields), cls
        secrets = cls.SECRET_FIELDS
        with_secrets += bool(secrets)
        for name, value in fields.items():
            nested = {s.split(".", 1)[1] for s in secrets if s.startswith(name + ".")}
            if name in cls.SESSION_KEY_FIELDS:   # RES: redacted in the record, the record may reveal it
                assert record[name] == REDACTED and msg.session_key_values() == {name: value}, (cls, name)
            elif name in secrets:
                assert record[name] == REDACTED, (cls, name)
                assert value.hex() not in text and str(value) not in text, (cls, name)
            elif nested:  # a secret inside each element (the AVs' XRES, CK, IK)
                for element, recorded in zip(value, record[name]):
                    for inner in nested:
                        assert recorded[inner] == REDACTED and getattr(element, inner).hex() not in text
            elif isinstance(value, bytes):
                assert record[name] == value.hex() and value.hex() in text, (cls, name)
            elif isinstance(value, str):
                assert record[name] == value and repr(value) in text, (cls, name)
        assert sorted(msg.secret_values()) == sorted(fields[n] for n in secrets if "." not in n)
    assert with_secrets >= 3  # the AVs and both kinds of credential response at least


# The messages that carry a secret, pinned: a change here is one a reviewer must see. A new
# message with a secret adds its line; a field named like a key must be declared secret.
SECRET_MESSAGES = {
    "AuthDataResponse": {"avs.xres", "avs.ck", "avs.ik"},
    "CredentialResponse": {"k", "opc"},
    "CredentialIssued": {"k", "opc"},
}
KEY_NAMES = {"k", "opc", "ck", "ik", "xres", "kasme", "adm", "adm1", "pin", "pin1", "puk", "mcim", "session_key"}


def test_the_secret_fields_of_messages_are_the_pinned_ones() -> None:
    declared = {cls.__name__: set(cls.SECRET_FIELDS) for cls in ALL_MESSAGES if cls.SECRET_FIELDS}
    assert {name: declared.get(name) for name in SECRET_MESSAGES} == SECRET_MESSAGES
    for cls in ALL_MESSAGES:
        for f in dataclasses.fields(cls):
            assert f.name not in KEY_NAMES or f.name in cls.SECRET_FIELDS, f"{cls.__name__}.{f.name} is not secret"


# -- the store ------------------------------------------------------------------------------


def test_store_keeps_each_entity_in_its_own_prefixed_tables(tmp_path: Path) -> None:
    path = tmp_path / "run" / "network.sqlite"
    with Store(path) as store:
        icf = store.entity("icf")
        icf.define("credentials", {"pcid": "TEXT", "k": "BLOB", "auc": "JSON"}, "pcid")
        icf.put("credentials", pcid="001020000000001", k=b"\x01" * 16, auc={"sqn": {"seq": 3}})
        icf.update("credentials", {"pcid": "001020000000001"}, auc={"sqn": {"seq": 4}})
        assert icf.get("credentials", pcid="001020000000001")["auc"] == {"sqn": {"seq": 4}}
        assert icf.get("credentials", pcid="nope") is None
        with pytest.raises(StoreError, match="not defined"):
            icf.get("sessions", pcid="1")
        with pytest.raises(StoreError, match="bad table/column name"):
            icf.define("x; DROP TABLE icf_credentials", {"a": "TEXT"}, "a")
        assert store.tables() == ["icf_credentials"]
    # the run's file can be inspected afterwards with plain sqlite3
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT pcid, k FROM icf_credentials").fetchall()
    assert rows == [("001020000000001", b"\x01" * 16)]


def test_secret_columns_stay_out_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "network.sqlite"
    key = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
    with Store(path) as store:
        ccif = store.entity("ccif")
        ccif.define("credentials", {"pcid": "TEXT", "k": "SECRET", "issued_at": "REAL"}, "pcid")
        ccif.put("credentials", pcid="001020000000001", k=key, issued_at=1.0)
        ccif.update("credentials", {"pcid": "001020000000001"}, issued_at=2.0)
        row = ccif.get("credentials", pcid="001020000000001")
        assert row["k"] == key and row["issued_at"] == 2.0  # the process still has it
        with pytest.raises(StoreError, match="secret column"):
            ccif.select("credentials", k=key)
        with pytest.raises(StoreError, match="cannot be part of the key"):
            ccif.define("bad", {"k": "SECRET"}, "k")
    assert key not in path.read_bytes() and key.hex().encode() not in path.read_bytes()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT k FROM ccif_credentials").fetchall() == [(None,)]
    with Store(path) as reopened:  # a store reopened from the file has no keys
        ccif = reopened.entity("ccif")
        ccif.define("credentials", {"pcid": "TEXT", "k": "SECRET", "issued_at": "REAL"}, "pcid")
        assert ccif.get("credentials", pcid="001020000000001")["k"] is None


def test_a_network_built_again_in_the_same_folder_starts_fresh(tmp_path: Path,
                                                                ek_root: CertificateAuthority) -> None:
    # keys never reach the SQLite file, so an earlier run's state must not be picked up
    first = build_network(None, tmp_path, None, ek_roots=[ek_root.certificate])
    pcid = first.m2mes.personalise("platform-1", ek_root.certificate.public_key()).pcid
    first.close()
    again = build_network(None, tmp_path, None, ek_roots=[ek_root.certificate])
    personal = again.m2mes.personalise("platform-1", ek_root.certificate.public_key())
    assert personal.pcid == pcid  # the CCIF's numbering starts over
    assert len(personal.k) == 16 and len(personal.opc) == 16
    again.close()
