"""`shelfedge frames decode` as a technician runs it: the real CLI in a subprocess, stdin in,
stdout out. One output line per input line, in order; bad lines get an error and the command
goes on; exit 0 unless stdin cannot be read; never a traceback."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.radio.decode_cli import DecodeSettings, FrameDecoder
from edge.radio.keys import DayKeys
from tests.helpers import DEMO_STORE

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
RPI = bytes.fromhex("00112233445566778899aabbccddeeff")
UUID = "fda50693a4e24fb1afcfc6eb07647825"

KINDS = {
    None,
    "ibeacon",
    "altbeacon",
    "eddystone_uid",
    "eddystone_url",
    "eddystone_tlm",
    "eddystone_eid",
    "token",
}

pytestmark = pytest.mark.timeout(60)


def _token(tier: int, key: bytes, rpi: bytes = RPI) -> str:
    header = (1 << 4) | tier
    # the tag exactly as BRIEF §4 defines it (written here, not imported from edge)
    tag = hmac.new(key, bytes([header]) + rpi, hashlib.sha256).digest()[:4]
    return (bytes([header]) + rpi + tag).hex()


def _decode(
    lines: list[str] | bytes, *args: str, stdin: Any = subprocess.PIPE
) -> tuple[list[dict[str, Any]], subprocess.CompletedProcess[bytes]]:
    data = lines if isinstance(lines, bytes) else "".join(f"{ln}\n" for ln in lines).encode()
    res = subprocess.run(
        [sys.executable, "-m", "edge", "frames", "decode", *args],
        input=data if stdin is subprocess.PIPE else None,
        stdin=None if stdin is subprocess.PIPE else stdin,
        capture_output=True,
        timeout=30,
    )
    assert b"Traceback" not in res.stderr, res.stderr.decode()
    assert b"Traceback" not in res.stdout
    out = [json.loads(line) for line in res.stdout.decode().splitlines()]
    return out, res


def _line(**kw: Any) -> str:
    return json.dumps({"address": "C0:FF:EE:00:00:01", "rssi": -61, **kw})


def test_every_kind_bad_frames_and_bad_lines_in_order() -> None:
    tlm = "2000" + struct.pack(">HHII", 3012, 0xFF80, 77, 123_456).hex()
    bid = "2f234454cf6d4a0fadf2f4911ba9ffa600080001"
    lines = [
        _line(manufacturer_data={"76": "0215" + UUID + "00640003c5"}),  # 1 iBeacon (decimal id)
        _line(manufacturer_data={"0x0118": "beac" + bid + "c400", "0x004c": "1005aabbccddee"}),
        _line(service_data={"feaa": "00ec8b0ca750e7a74e14bd990000000000060000"}),  # 3 UID
        _line(service_data={"0000feaa-0000-1000-8000-00805f9b34fb": "10eb0173686f7000"}),  # 4
        _line(service_data={"FEAA": tlm}),  # 5 TLM
        _line(service_data={"feaa": "30f8" + "0102030405060708"}),  # 6 EID
        _line(service_data={"fff4": _token(2, KEY)}),  # 7 token
        _line(service_data={"feaa": "10eb04" + "6162"}),  # 8 unknown URL scheme byte
        _line(manufacturer_data={"0x004C": "0215" + UUID}),  # 9 short iBeacon
        _line(manufacturer_data={"0x0006": "01092002"}, local_name="Surface"),  # 10 nothing
        "this is not json",  # 11
        "",  # 12
        '["an", "array"]',  # 13
        _line(rssi="-61"),  # 14
        _line(manufacturer_data={"apple": "0215"}),  # 15
        _line(service_data={"feaa": "0xzz"}),  # 16
        '{"rssi": -60, "rssi": -61}',  # 17
        _line(manufacturer_data={"76": "00", "0x004c": "00"}),  # 18 same id twice
        _line(service_data={"feaa": "40"}),  # 19 unknown Eddystone frame type
        _line(service_data={"feaa": "00ec" + "00" * 16 + "0100"}),  # 20 RFU byte set
        _line(manufacturer_data={"0x004c": "0215" + UUID + "00640003c5"}),  # 21 good again
    ]
    out, res = _decode(lines)
    assert res.returncode == 0 and res.stderr == b""
    assert len(out) == len(lines)
    assert out[0] == {
        "kind": "ibeacon",
        "uuid": "fda50693-a4e2-4fb1-afcf-c6eb07647825",
        "major": 100,
        "minor": 3,
        "tx_power": -59,
    }
    assert out[1] == {"kind": "altbeacon", "beacon_id": bid, "mfg_id": 0x0118, "ref_rssi": -60}
    assert out[2] == {
        "kind": "eddystone_uid",
        "namespace": "8b0ca750e7a74e14bd99",
        "instance": "000000000006",
        "tx_power": -20,
    }
    assert out[3] == {"kind": "eddystone_url", "url": "https://www.shop.com/", "tx_power": -21}
    assert out[4] == {
        "kind": "eddystone_tlm",
        "battery_mv": 3012,
        "temperature_c": -0.5,
        "adv_count": 77,
        "uptime_s": 12345.6,
    }
    assert out[5] == {"kind": "eddystone_eid", "eid": "0102030405060708", "tx_power": -8}
    assert out[6] == {"kind": "token", "version": 1, "tier": 2, "rpi": RPI.hex(), "tag_ok": None}
    assert out[7]["kind"] == "eddystone_url" and out[7]["error"].startswith("line 8: ")
    assert "unknown URL scheme byte 0x04" in out[7]["error"]
    assert out[8]["kind"] == "ibeacon" and "line 9: iBeacon: payload is 18 bytes" in out[8]["error"]
    assert out[9] == {"kind": None}
    expected_errors = {
        10: "line 11: not JSON",
        11: "line 12: empty line",
        12: "line 13: expected a JSON object, got an array",
        13: "line 14: rssi: must be an integer, got a string",
        14: "line 15: manufacturer_data: company id 'apple'",
        15: "line 16: service_data['feaa']: payload is not hex",
        16: "line 17: not valid JSON: duplicate key 'rssi'",
        17: "line 18: manufacturer_data: company id 0x004c given twice",
        18: "line 19: Eddystone: unknown frame type 0x40",
        19: "line 20: Eddystone-UID: reserved byte 18 is 0x01",
    }
    for i, text in expected_errors.items():
        assert out[i]["error"].startswith(text), (i, out[i])
    assert out[19]["kind"] == "eddystone_uid"
    assert all(out[i]["kind"] is None for i in range(10, 19))
    assert out[20] == out[0]


def test_undecodable_bytes_and_overlong_lines_do_not_stop_it() -> None:
    good = _line(service_data={"feaa": "30f80102030405060708"}).encode()
    data = b"\xff\xfe{}\n" + b'{"x": "' + b"a" * 70_000 + b'"}\n' + good + b"\n" + good
    out, res = _decode(data)
    assert res.returncode == 0
    assert [o["kind"] for o in out] == [None, None, "eddystone_eid", "eddystone_eid"]
    assert out[0]["error"] == "line 1: not UTF-8 (byte 0)"
    assert out[1]["error"] == "line 2: longer than 65536 bytes"


def test_token_tags_with_a_site_key() -> None:
    lines = [
        _line(service_data={"fff4": _token(1, KEY)}),
        _line(service_data={"fff4": _token(1, OTHER_KEY)}),
        _line(manufacturer_data={"0xffff": _token(3, KEY)}),
        _line(service_data={"fff4": _token(1, KEY)[:-2]}),  # 20 bytes
    ]
    out, res = _decode(lines, "--site-key", KEY.hex())
    assert res.returncode == 0
    assert [o.get("tag_ok") for o in out[:3]] == [True, False, True]
    assert out[2]["tier"] == 3
    assert out[3]["kind"] == "token" and "21 bytes, got 20" in out[3]["error"]


def test_token_tags_and_ids_from_a_config(tmp_path: Path) -> None:
    data = yaml.safe_load(DEMO_STORE.read_text())
    data["radio"]["token_service_uuid"] = 0xFFF5
    tz = ZoneInfo(data["timezone"])
    day = dt.date(2026, 11, 24)
    data["privacy"]["day_keys"] = {day.isoformat(): KEY.hex()}
    cfg = tmp_path / "store.yaml"
    cfg.write_text(yaml.safe_dump(data))
    noon = dt.datetime.combine(day, dt.time(12), tz).timestamp()
    token = _token(1, KEY)
    lines = [
        _line(service_data={"fff5": token}),  # no ts: any configured day
        _line(service_data={"fff5": token}, ts=noon),  # the key's own day
        _line(service_data={"fff5": token}, ts=noon + 86_400),  # next day: still "yesterday"
        _line(service_data={"fff5": token}, ts=noon + 2 * 86_400),  # too late
        _line(service_data={"fff4": token}),  # the default UUID is not this store's
        _line(service_data={"fff5": token}, ts=1e300),
    ]
    out, res = _decode(lines, "--config", str(cfg))
    assert res.returncode == 0
    assert [o.get("tag_ok") for o in out[:4]] == [True, True, True, False]
    assert out[4] == {"kind": None}
    assert out[5]["kind"] is None and out[5]["error"].startswith("line 6: ts: ")
    # a config without day keys leaves tags unchecked
    del data["privacy"]["day_keys"]
    cfg.write_text(yaml.safe_dump(data))
    out, _ = _decode(lines[:1], "--config", str(cfg))
    assert out[0]["tag_ok"] is None


def test_bad_arguments_and_unreadable_stdin(tmp_path: Path) -> None:
    out, res = _decode([_line()], "--site-key", "abc")
    assert (out, res.returncode) == ([], 2)
    assert b"--site-key must be 32 bytes as 64 hex digits" in res.stderr
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("site: [\n")
    out, res = _decode([_line()], "--config", str(bad_cfg))
    assert (out, res.returncode) == ([], 1) and str(bad_cfg).encode() in res.stderr
    # stdin opened for writing only: reading it fails
    with (tmp_path / "w").open("wb") as write_only:
        out, res = _decode(b"", stdin=write_only)
    assert (out, res.returncode) == ([], 1)
    assert b"cannot read stdin" in res.stderr


def test_a_reader_that_goes_away_ends_it_quietly() -> None:
    line = (_line(service_data={"feaa": "30f80102030405060708"}) + "\n").encode()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "frames", "decode"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(line)
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["kind"] == "eddystone_eid"
    proc.stdout.close()  # like `| head -1`
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(line * 5000)
        proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    assert proc.stderr.read() == b""


def test_empty_input_is_fine() -> None:
    out, res = _decode(b"")
    assert (out, res.returncode, res.stderr) == ([], 0, b"")


# -- the same decoder in-process, on arbitrary lines (the subprocess tests above are the CLI) ----

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
_HEXS = st.binary(max_size=26).map(bytes.hex)
_KEYS = st.sampled_from(["76", "0x004c", "0x0118", "65535", "0xffff", "99999", "-1", "0x"])
_UUIDS = st.sampled_from(["feaa", "FEAA", "fff4", "0xfeaa", "0000feaa", "zz", ""])
_ADVERT = st.fixed_dictionaries(
    {},
    optional={
        "address": _JSON,
        "rssi": st.integers(-128, 20) | _JSON,
        "manufacturer_data": st.dictionaries(_KEYS, _HEXS | _JSON, max_size=3) | _JSON,
        "service_data": st.dictionaries(_UUIDS, _HEXS | _JSON, max_size=3) | _JSON,
        "ts": st.floats(allow_nan=True) | st.integers() | _JSON,
        "tx_power": _JSON,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    line=st.one_of(
        _ADVERT.map(lambda d: json.dumps(d).encode()),
        _JSON.map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=60),
    ),
    site_key=st.booleans(),
)
def test_any_line_gives_one_object_with_a_kind(line: bytes, site_key: bool) -> None:
    keys = DayKeys({dt.date(2000, 1, 1): KEY}) if site_key else None
    decoder = FrameDecoder(DecodeSettings(keys=keys, site_key=site_key))
    out = decoder.decode(line, 7)
    assert out["kind"] in KINDS
    if "error" in out:
        assert out["error"].startswith("line 7: ")
    json.dumps(out)  # always serialisable
