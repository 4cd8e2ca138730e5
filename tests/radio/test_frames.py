"""Frame decoders against each specification's boundary cases, plus property tests.

The byte layouts below are written from the specifications (Apple iBeacon, AltBeacon 1.0,
Google's Eddystone UID/URL/TLM/EID pages), not from the decoder: the small encoder here is
the test's own, so a round trip checks the decoder against an independent reading.
"""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import FrameError
from edge.radio import frames as fr

EDDYSTONE = fr.uuid16_key(0xFEAA)
UUID = bytes.fromhex("fda50693a4e24fb1afcfc6eb07647825")
UUID_STR = "fda50693-a4e2-4fb1-afcf-c6eb07647825"
NS = bytes.fromhex("8b0ca750e7a74e14bd99")
INST = bytes.fromhex("000000000006")

# -- the test's own encoder ---------------------------------------------------------------------

SCHEMES = {0x00: "http://www.", 0x01: "https://www.", 0x02: "http://", 0x03: "https://"}
EXPANSIONS = {
    0x00: ".com/",
    0x01: ".org/",
    0x02: ".edu/",
    0x03: ".net/",
    0x04: ".info/",
    0x05: ".biz/",
    0x06: ".gov/",
    0x07: ".com",
    0x08: ".org",
    0x09: ".edu",
    0x0A: ".net",
    0x0B: ".info",
    0x0C: ".biz",
    0x0D: ".gov",
}


def enc_ibeacon(uuid: bytes, major: int, minor: int, power: int) -> bytes:
    return bytes([0x02, 0x15]) + uuid + struct.pack(">HHb", major, minor, power)


def enc_altbeacon(beacon_id: bytes, ref_rssi: int, reserved: int = 0) -> bytes:
    return bytes([0xBE, 0xAC]) + beacon_id + struct.pack(">bB", ref_rssi, reserved)


def enc_uid(ns: bytes, inst: bytes, tx: int, rfu: bytes = b"\x00\x00") -> bytes:
    return bytes([0x00]) + struct.pack(">b", tx) + ns + inst + rfu


def enc_url(tx: int, scheme: int, parts: list[int | str]) -> bytes:
    body = b"".join(bytes([p]) if isinstance(p, int) else p.encode("ascii") for p in parts)
    return bytes([0x10]) + struct.pack(">b", tx) + bytes([scheme]) + body


def enc_tlm(battery_mv: int, temp_raw: int, adv: int, deciseconds: int, version: int = 0) -> bytes:
    return bytes([0x20, version]) + struct.pack(">HHII", battery_mv, temp_raw, adv, deciseconds)


def enc_eid(eid: bytes, tx: int) -> bytes:
    return bytes([0x30]) + struct.pack(">b", tx) + eid


def enc_token(version: int, tier: int, rpi: bytes, tag: bytes) -> bytes:
    return bytes([(version << 4) | tier]) + rpi + tag


# -- iBeacon ------------------------------------------------------------------------------------


def test_ibeacon_fields_and_signed_power() -> None:
    got = fr.parse_ibeacon(enc_ibeacon(UUID, 100, 3, -59))
    assert got == fr.IBeacon(UUID_STR, 100, 3, -59)
    assert fr.parse_ibeacon(enc_ibeacon(UUID, 0, 0xFFFF, 4)) == fr.IBeacon(UUID_STR, 0, 65535, 4)
    assert fr.parse_ibeacon(enc_ibeacon(UUID, 1, 2, -128)).tx_power == -128  # type: ignore[union-attr]
    assert fr.parse_ibeacon(enc_ibeacon(UUID, 1, 2, 127)).tx_power == 127  # type: ignore[union-attr]


def test_ibeacon_lengths() -> None:
    full = enc_ibeacon(UUID, 100, 3, -59)
    with pytest.raises(FrameError, match="22 bytes, needs 23"):
        fr.parse_ibeacon(full[:22])
    with pytest.raises(FrameError, match="length byte"):
        fr.parse_ibeacon(b"\x02")
    with pytest.raises(FrameError, match="0x16, must be 0x15"):
        fr.parse_ibeacon(b"\x02\x16" + full[2:] + b"\x00")
    # Apple data is a type-length list: a further element after the iBeacon is tolerated.
    assert fr.parse_ibeacon(full + b"\x10\x02\x01\x02") == fr.IBeacon(UUID_STR, 100, 3, -59)


def test_not_an_ibeacon() -> None:
    assert fr.parse_ibeacon(b"") is None
    assert fr.parse_ibeacon(b"\x10\x05\x01\x02\x03\x04\x05") is None  # Continuity Nearby Info
    assert fr.parse_ibeacon(b"\x12\x19" + bytes(25)) is None  # Find My


# -- AltBeacon ----------------------------------------------------------------------------------


def test_altbeacon_fields_lengths_and_reserved_byte() -> None:
    bid = bytes(range(20))
    assert fr.parse_altbeacon(0x0118, enc_altbeacon(bid, -60)) == fr.AltBeacon(
        bid.hex(), 0x0118, -60
    )
    # The last byte is reserved for the manufacturer: any value is allowed.
    assert fr.parse_altbeacon(1, enc_altbeacon(bid, 5, reserved=0xFF)) == fr.AltBeacon(
        bid.hex(), 1, 5
    )
    with pytest.raises(FrameError, match="23 bytes, needs 24"):
        fr.parse_altbeacon(1, enc_altbeacon(bid, -60)[:23])
    with pytest.raises(FrameError, match="2 bytes"):
        fr.parse_altbeacon(1, b"\xbe\xac")
    assert fr.parse_altbeacon(1, enc_altbeacon(bid, -60) + b"\x01\x02") == fr.AltBeacon(
        bid.hex(), 1, -60
    )
    assert fr.parse_altbeacon(1, b"\xac\xbe" + bytes(22)) is None
    assert fr.parse_altbeacon(1, b"") is None


# -- Eddystone ----------------------------------------------------------------------------------


def test_eddystone_uid_lengths_rfu_and_tx_power() -> None:
    want = fr.EddystoneUid(NS.hex(), INST.hex(), -21)
    full = enc_uid(NS, INST, -21)
    assert fr.parse_eddystone(full) == want
    assert fr.parse_eddystone(full[:18]) == want  # truncated RFU, as older beacons send
    assert fr.parse_eddystone(full[:19]) == want
    assert fr.parse_eddystone(full + b"\x07") == want  # trailing byte after the RFU
    assert fr.parse_eddystone(enc_uid(NS, INST, 20)).tx_power == 20  # type: ignore[union-attr]
    with pytest.raises(FrameError, match="17 bytes, needs 18"):
        fr.parse_eddystone(full[:17])
    with pytest.raises(FrameError, match="reserved byte 18"):
        fr.parse_eddystone(enc_uid(NS, INST, -21, rfu=b"\x01\x00"))
    with pytest.raises(FrameError, match="reserved byte 19"):
        fr.parse_eddystone(enc_uid(NS, INST, -21, rfu=b"\x00\x80"))
    # the older name keeps its meaning: None for other Eddystone frames
    assert fr.parse_eddystone_uid(full) == want
    assert fr.parse_eddystone_uid(enc_eid(bytes(8), 0)) is None


@pytest.mark.parametrize(
    ("code", "text"),
    sorted(EXPANSIONS.items()),
)
def test_eddystone_url_every_expansion_code(code: int, text: str) -> None:
    got = fr.parse_eddystone(enc_url(-20, 0x03, ["goo", code]))
    assert got == fr.EddystoneUrl(f"https://goo{text}", -20)


@pytest.mark.parametrize(("scheme", "prefix"), sorted(SCHEMES.items()))
def test_eddystone_url_every_scheme(scheme: int, prefix: str) -> None:
    got = fr.parse_eddystone(enc_url(-20, scheme, ["example", 0x07]))
    assert got == fr.EddystoneUrl(f"{prefix}example.com", -20)


def test_eddystone_url_boundaries() -> None:
    assert fr.parse_eddystone(enc_url(0, 0x02, [])) == fr.EddystoneUrl("http://", 0)
    assert fr.parse_eddystone(enc_url(-100, 0x03, ["a" * 17])) == fr.EddystoneUrl(
        "https://" + "a" * 17, -100
    )
    assert fr.parse_eddystone(enc_url(0, 0x03, ["!~"])).url == "https://!~"  # type: ignore[union-attr]
    with pytest.raises(FrameError, match="18 bytes, at most 17"):
        fr.parse_eddystone(enc_url(0, 0x03, ["a" * 18]))
    with pytest.raises(FrameError, match="2 bytes, needs at least 3"):
        fr.parse_eddystone(b"\x10\xeb")
    for scheme in (0x04, 0x10, 0xFF):
        with pytest.raises(FrameError, match=f"unknown URL scheme byte 0x{scheme:02x}"):
            fr.parse_eddystone(enc_url(0, scheme, ["x"]))
    for reserved in (0x0E, 0x20, 0x7F, 0x80, 0xFF):
        with pytest.raises(FrameError, match=f"reserved byte 0x{reserved:02x} .*byte 4"):
            fr.parse_eddystone(enc_url(0, 0x03, ["x", reserved]))


def test_eddystone_tlm_fields() -> None:
    got = fr.parse_eddystone(enc_tlm(3000, 0x1780, 1234, 36_005))
    assert got == fr.EddystoneTlm(3000, 23.5, 1234, 3600.5)
    cold = fr.parse_eddystone(enc_tlm(2900, 0xFF80, 0, 0))  # -0.5 °C in signed 8.8
    assert cold == fr.EddystoneTlm(2900, -0.5, 0, 0.0)
    unsupported = fr.parse_eddystone(enc_tlm(0, 0x8000, 0xFFFFFFFF, 0xFFFFFFFF))
    assert unsupported == fr.EddystoneTlm(None, None, 0xFFFFFFFF, 0xFFFFFFFF / 10)
    assert fr.parse_eddystone(enc_tlm(1, 0x8001, 1, 1)).temperature_c == pytest.approx(  # type: ignore[union-attr]
        -128 + 1 / 256
    )


def test_eddystone_tlm_lengths_and_versions() -> None:
    full = enc_tlm(3000, 0x1780, 1, 1)
    assert fr.parse_eddystone(full + b"\x00\x01") == fr.parse_eddystone(full)
    with pytest.raises(FrameError, match="13 bytes, needs 14"):
        fr.parse_eddystone(full[:13])
    with pytest.raises(FrameError, match="version byte is missing"):
        fr.parse_eddystone(b"\x20")
    with pytest.raises(FrameError, match="encrypted"):
        fr.parse_eddystone(enc_tlm(3000, 0x1780, 1, 1, version=1))
    with pytest.raises(FrameError, match="unknown version 0x02"):
        fr.parse_eddystone(enc_tlm(3000, 0x1780, 1, 1, version=2))


def test_eddystone_eid() -> None:
    eid = bytes.fromhex("0102030405060708")
    assert fr.parse_eddystone(enc_eid(eid, -8)) == fr.EddystoneEid(eid.hex(), -8)
    assert fr.parse_eddystone(enc_eid(eid, 8) + b"\xff") == fr.EddystoneEid(eid.hex(), 8)
    with pytest.raises(FrameError, match="9 bytes, needs 10"):
        fr.parse_eddystone(enc_eid(eid, -8)[:9])


def test_eddystone_frame_type_byte() -> None:
    with pytest.raises(FrameError, match="empty"):
        fr.parse_eddystone(b"")
    for unknown in (0x40, 0x50, 0xF0):
        with pytest.raises(FrameError, match=f"unknown frame type 0x{unknown:02x}"):
            fr.parse_eddystone(bytes([unknown]) + bytes(19))
    for reserved_bits in (0x01, 0x08, 0x11, 0x2F, 0x38):
        with pytest.raises(FrameError, match="reserved low bits"):
            fr.parse_eddystone(bytes([reserved_bits]) + bytes(19))


# -- token frame ----------------------------------------------------------------------------------


def test_token_frame_boundaries() -> None:
    rpi, tag = bytes(range(16)), b"\x01\x02\x03\x04"
    frame = fr.parse_token(enc_token(1, 3, rpi, tag))
    assert (frame.version, frame.tier, frame.rpi, frame.tag, frame.header) == (1, 3, rpi, tag, 0x13)
    for bad_len in (0, 20, 22):
        with pytest.raises(FrameError, match="21 bytes"):
            fr.parse_token(enc_token(1, 1, rpi, tag).ljust(bad_len, b"\0")[:bad_len])
    with pytest.raises(FrameError, match="version 2"):
        fr.parse_token(enc_token(2, 1, rpi, tag))
    with pytest.raises(FrameError, match="tier 4"):
        fr.parse_token(enc_token(1, 4, rpi, tag))


# -- whole advertisements -------------------------------------------------------------------------


def test_several_company_ids_in_one_advert() -> None:
    bid = bytes(range(20))
    md = {
        0x004C: b"\x10\x05\x01\x02\x03\x04\x05",  # Apple Continuity, not an iBeacon
        0x0006: b"\x01\x09\x20\x02",  # Microsoft CDP
        0x0118: enc_altbeacon(bid, -60),
    }
    assert fr.classify(md, {}) == fr.AltBeacon(bid.hex(), 0x0118, -60)
    md[0x004C] = enc_ibeacon(UUID, 1, 2, -59)
    assert fr.classify(md, {}) == fr.IBeacon(UUID_STR, 1, 2, -59)  # iBeacon comes first
    # a malformed frame does not hide a good one in the same advert
    md[0x004C] = enc_ibeacon(UUID, 1, 2, -59)[:20]
    assert fr.classify(md, {}) == fr.AltBeacon(bid.hex(), 0x0118, -60)
    del md[0x0118]
    bad = fr.classify(md, {})
    assert isinstance(bad, fr.Malformed) and bad.kind == "ibeacon" and "20 bytes" in bad.error
    assert fr.classify({0x0006: b"\x01"}, {}) is None
    assert fr.classify({}, {}) is None


def test_classify_tokens_and_eddystone() -> None:
    token = enc_token(1, 2, bytes(16), bytes(4))
    assert isinstance(fr.classify({}, {fr.uuid16_key(0xFFF4): token}), fr.TokenFrame)
    assert isinstance(fr.classify({0xFFFF: token}, {}), fr.TokenFrame)
    # a configured company id / UUID is honoured
    assert isinstance(fr.classify({0x1234: token}, {}, token_company_id=0x1234), fr.TokenFrame)
    assert fr.classify({0x1234: token}, {}) is None
    bad = fr.classify({}, {fr.uuid16_key(0xFFF4): token[:20]})
    assert isinstance(bad, fr.Malformed) and bad.kind == "token"
    # 0xFFFF is the SIG's test id: other lengths there are not read as tokens
    assert fr.classify({0xFFFF: b"\x11\x00"}, {}) is None
    url = fr.classify({}, {EDDYSTONE: enc_url(-20, 3, ["x", 7])})
    assert url == fr.EddystoneUrl("https://x.com", -20)
    unknown = fr.classify({}, {EDDYSTONE: b"\x40\x00"})
    assert isinstance(unknown, fr.Malformed) and unknown.kind is None
    tlm_bad = fr.classify({}, {EDDYSTONE: b"\x20\x00\x01"})
    assert isinstance(tlm_bad, fr.Malformed) and tlm_bad.kind == "eddystone_tlm"


# -- properties -----------------------------------------------------------------------------------

FRAME_TYPES = (
    fr.TokenFrame,
    fr.IBeacon,
    fr.AltBeacon,
    fr.EddystoneUid,
    fr.EddystoneUrl,
    fr.EddystoneTlm,
    fr.EddystoneEid,
)
DECODERS = (
    fr.parse_ibeacon,
    fr.parse_eddystone,
    fr.parse_eddystone_uid,
    fr.parse_token,
    lambda b: fr.parse_altbeacon(0x0118, b),
)


@settings(max_examples=400, deadline=None)
@given(payload=st.binary(max_size=40), prefix=st.sampled_from([b"", b"\x02\x15", b"\xbe\xac"]))
def test_random_bytes_raise_only_frame_error(payload: bytes, prefix: bytes) -> None:
    for decode in DECODERS:
        with contextlib.suppress(FrameError):
            got = decode(prefix + payload)
            assert got is None or isinstance(got, FRAME_TYPES)


@settings(max_examples=300, deadline=None)
@given(
    payload=st.binary(max_size=30),
    ftype=st.sampled_from([0x00, 0x10, 0x20, 0x30, 0x40]),
    version=st.integers(0, 2),
)
def test_random_eddystone_bodies_raise_only_frame_error(
    payload: bytes, ftype: int, version: int
) -> None:
    with contextlib.suppress(FrameError):
        got = fr.parse_eddystone(bytes([ftype, version]) + payload)
        assert got.kind == {
            0x00: "eddystone_uid",
            0x10: "eddystone_url",
            0x30: "eddystone_eid",
        }.get(ftype, "eddystone_tlm")


@settings(max_examples=200, deadline=None)
@given(
    md=st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=30), max_size=4),
    sd=st.dictionaries(
        st.sampled_from([EDDYSTONE, fr.uuid16_key(0xFFF4), fr.uuid16_key(0xFE2C)]),
        st.binary(max_size=30),
        max_size=3,
    ),
)
def test_classify_never_raises(md: dict[int, bytes], sd: dict[str, bytes]) -> None:
    got = fr.classify(md, sd)
    assert got is None or isinstance(got, (fr.Malformed, *FRAME_TYPES))


@settings(max_examples=150, deadline=None)
@given(
    uuid=st.binary(min_size=16, max_size=16),
    major=st.integers(0, 0xFFFF),
    minor=st.integers(0, 0xFFFF),
    power=st.integers(-128, 127),
    trailing=st.binary(max_size=4),
)
def test_ibeacon_round_trip(
    uuid: bytes, major: int, minor: int, power: int, trailing: bytes
) -> None:
    got = fr.parse_ibeacon(enc_ibeacon(uuid, major, minor, power) + trailing)
    h = uuid.hex()
    assert got == fr.IBeacon(
        f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", major, minor, power
    )


@settings(max_examples=150, deadline=None)
@given(
    bid=st.binary(min_size=20, max_size=20),
    ref=st.integers(-128, 127),
    reserved=st.integers(0, 255),
    company=st.integers(0, 0xFFFF),
)
def test_altbeacon_round_trip(bid: bytes, ref: int, reserved: int, company: int) -> None:
    got = fr.parse_altbeacon(company, enc_altbeacon(bid, ref, reserved))
    assert got == fr.AltBeacon(bid.hex(), company, ref)


@settings(max_examples=150, deadline=None)
@given(
    ns=st.binary(min_size=10, max_size=10),
    inst=st.binary(min_size=6, max_size=6),
    tx=st.integers(-128, 127),
    rfu=st.sampled_from([b"", b"\x00", b"\x00\x00"]),
)
def test_eddystone_uid_round_trip(ns: bytes, inst: bytes, tx: int, rfu: bytes) -> None:
    got = fr.parse_eddystone(enc_uid(ns, inst, tx, rfu))
    assert got == fr.EddystoneUid(ns.hex(), inst.hex(), tx)


_URL_PART = st.one_of(
    st.integers(0x00, 0x0D),
    st.text(alphabet=[chr(c) for c in range(0x21, 0x7F)], min_size=1, max_size=1),
)


@settings(max_examples=200, deadline=None)
@given(
    tx=st.integers(-128, 127),
    scheme=st.sampled_from(sorted(SCHEMES)),
    parts=st.lists(_URL_PART, max_size=17),
)
def test_eddystone_url_round_trip(tx: int, scheme: int, parts: list[int | str]) -> None:
    want = SCHEMES[scheme] + "".join(EXPANSIONS[p] if isinstance(p, int) else p for p in parts)
    assert fr.parse_eddystone(enc_url(tx, scheme, parts)) == fr.EddystoneUrl(want, tx)


@settings(max_examples=150, deadline=None)
@given(
    battery=st.integers(0, 0xFFFF),
    temp_raw=st.integers(0, 0xFFFF),
    adv=st.integers(0, 0xFFFFFFFF),
    deciseconds=st.integers(0, 0xFFFFFFFF),
)
def test_eddystone_tlm_round_trip(battery: int, temp_raw: int, adv: int, deciseconds: int) -> None:
    got = fr.parse_eddystone(enc_tlm(battery, temp_raw, adv, deciseconds))
    signed = temp_raw - 0x10000 if temp_raw >= 0x8000 else temp_raw
    assert got == fr.EddystoneTlm(
        battery if battery else None,
        None if temp_raw == 0x8000 else signed / 256,
        adv,
        deciseconds / 10,
    )


@settings(max_examples=100, deadline=None)
@given(eid=st.binary(min_size=8, max_size=8), tx=st.integers(-128, 127))
def test_eddystone_eid_round_trip(eid: bytes, tx: int) -> None:
    assert fr.parse_eddystone(enc_eid(eid, tx)) == fr.EddystoneEid(eid.hex(), tx)


@settings(max_examples=100, deadline=None)
@given(
    tier=st.integers(0, 3),
    rpi=st.binary(min_size=16, max_size=16),
    tag=st.binary(min_size=4, max_size=4),
)
def test_token_round_trip(tier: int, rpi: bytes, tag: bytes) -> None:
    assert fr.parse_token(enc_token(1, tier, rpi, tag)) == fr.TokenFrame(1, tier, rpi, tag)
