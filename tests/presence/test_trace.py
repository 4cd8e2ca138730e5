"""The presence trace format: each line kind, malformed lines by number, the recorder's guard."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from edge.presence.trace import (
    AdvertLine,
    AppLine,
    BeaconLine,
    SimTraceRecorder,
    TraceMeta,
    iter_trace,
    parse_line,
    read_trace,
)
from edge.radio import frames

IBEACON = {
    "kind": "ibeacon",
    "uuid": "5a4bcfce-174e-4bac-a814-092e77f6b7e5",
    "major": 1,
    "minor": 2,
}
FRAME = "11" + "ab" * 16 + "01020304"


def test_app_sighting_without_frame_with_truth_and_walk() -> None:
    line = parse_line(
        json.dumps({"beacon": IBEACON, "rssi": -70, "ts": 5, "zone": "a", "walk": 3}), 2
    )
    assert isinstance(line, AppLine)
    assert line.frame is None and line.ts == 5.0 and line.walk == 3
    assert line.has_truth and line.zone == "a"


def test_zone_null_is_known_truth_absent_zone_is_not() -> None:
    between = parse_line(json.dumps({"beacon": IBEACON, "rssi": -70, "ts": 1, "zone": None}), 1)
    unknown = parse_line(json.dumps({"beacon": IBEACON, "rssi": -70, "ts": 1}), 1)
    assert isinstance(between, AppLine) and isinstance(unknown, AppLine)
    assert between.has_truth and between.zone is None
    assert not unknown.has_truth


def test_app_sighting_with_frame_keeps_the_app_object() -> None:
    obj = {"frame": FRAME, "beacon": IBEACON, "rssi": -60, "ts": 1.5}
    line = parse_line(json.dumps(obj), 1)
    assert isinstance(line, AppLine)
    assert line.app_object(FRAME) == obj


def test_receiver_advert_keys_in_both_spellings() -> None:
    obj = {
        "receiver": "rx-1",
        "manufacturer_data": {"76": "0215" + "00" * 21, "0xFFFF": "aa"},
        "service_data": {"fff4": FRAME, "0000feaa-0000-1000-8000-00805f9b34fb": "00"},
        "rssi": -80,
        "ts": 2.0,
        "address": "AA:BB:CC:DD:EE:FF",
    }
    line = parse_line(json.dumps(obj), 1)
    assert isinstance(line, AdvertLine)
    adv = line.advertisement()
    assert set(adv.manufacturer_data) == {0x004C, 0xFFFF}
    assert adv.service_data[frames.uuid16_key(0xFFF4)] == bytes.fromhex(FRAME)
    assert frames.uuid16_key(0xFEAA) in adv.service_data
    assert adv.receiver == "rx-1" and adv.rssi == -80


def test_calibrate_record_line_is_a_beacon_sample() -> None:
    # exactly what `shelfedge calibrate --record` writes
    line = parse_line('{"ts": 3.2, "beacon": "b-coffee", "receiver": "rx-coffee", "rssi": -71}', 1)
    assert isinstance(line, BeaconLine) and line.beacon == "b-coffee"


def test_format_line_only_first() -> None:
    meta = parse_line('{"format": "shelfedge-trace/1", "source": "simulator", "seed": 4}', 1)
    assert isinstance(meta, TraceMeta) and meta.seed == 4
    with pytest.raises(ValueError, match="first line"):
        parse_line('{"format": "shelfedge-trace/1"}', 2)


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"rssi": -70, "ts": 1}', "neither an app sighting"),
        ('{"beacon": {}, "rssi": -70, "ts": 1, "beacon": {}}', "duplicate key"),
        (f'{{"beacon": {json.dumps(IBEACON)}, "rssi": "-70", "ts": 1}}', "rssi"),
        (f'{{"beacon": {json.dumps(IBEACON)}, "rssi": true, "ts": 1}}', "rssi"),
        (f'{{"beacon": {json.dumps(IBEACON)}, "rssi": -70, "ts": "1"}}', "ts"),
        (f'{{"beacon": {json.dumps(IBEACON)}, "rssi": -70, "ts": 1, "colour": 1}}', "colour"),
        (f'{{"beacon": {json.dumps(IBEACON)}, "rssi": -70, "ts": 1, "frame": "abc"}}', "frame"),
        ('{"beacon": {"kind": "ibeacon", "uuid": "x", "major": 70000, "minor": 1}, '
         '"rssi": -70, "ts": 1}', "beacon.ibeacon.major"),
        ('{"beacon": {"kind": "beacon9"}, "rssi": -70, "ts": 1}', "beacon"),
        ('{"receiver": "rx", "manufacturer_data": {"apple": "00"}, "rssi": -1, "ts": 1}',
         "company id"),
        ('{"receiver": "rx", "manufacturer_data": {"0x10000": "00"}, "rssi": -1, "ts": 1}',
         "0-65535"),
        ('{"receiver": "rx", "service_data": {"fe": "00"}, "rssi": -1, "ts": 1}', "16-bit UUID"),
        ('{"receiver": "rx", "service_data": {"feaa": "0g"}, "rssi": -1, "ts": 1}', "hex"),
        ('{"receiver": "rx", "service_data": {"feaa": "000"}, "rssi": -1, "ts": 1}', "hex"),
        ('{"receiver": "rx", "rssi": -300, "ts": 1}', "rssi"),
    ],
)  # fmt: skip
def test_malformed_lines_are_refused_with_a_reason(text: str, expect: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expect)):
        parse_line(text, 1)


def test_problems_name_the_line_and_never_quote_the_input() -> None:
    secret = "de" * 21
    stream = io.StringIO(
        "\n".join(
            [
                '{"format": "shelfedge-trace/1"}',
                json.dumps({"beacon": IBEACON, "rssi": -70, "ts": 1}),
                "",  # blank lines are skipped, not counted
                json.dumps({"beacon": IBEACON, "rssi": f"{secret}", "ts": 2, "frame": secret}),
                "garbage",
                json.dumps(
                    {"receiver": "rx", "service_data": {"fff4": secret}, "rssi": -1, "ts": 3}
                ),
            ]
        )
    )
    items = list(iter_trace(stream))
    problems = [
        (n, str(p)) for n, p in items if not isinstance(p, AppLine | AdvertLine | TraceMeta)
    ]
    assert [n for n, _ in problems] == [4, 5]
    assert problems[0][1].startswith("line 4: rssi")
    assert all(secret not in text for _, text in problems)
    assert [n for n, p in items if isinstance(p, AppLine | AdvertLine)] == [2, 6]


def test_read_trace_counts_and_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    good = json.dumps({"beacon": IBEACON, "rssi": -70, "ts": 1})
    path.write_text("\n".join([good, "{", good, '{"ts": 1}', good]) + "\n")
    trace = read_trace(path)
    assert trace.read == 5
    assert [n for n, _ in trace.lines] == [1, 3, 5]
    assert [p.line for p in trace.problems] == [2, 4]


def test_only_the_simulator_can_drive_the_recorder(tmp_path: Path) -> None:
    out = tmp_path / "trace.jsonl"
    with pytest.raises(TypeError, match="simulator"):
        SimTraceRecorder(out, object())  # type: ignore[arg-type]
    assert not out.exists()


def test_nothing_but_the_demo_constructs_a_recorder() -> None:
    """No daemon path (scanner, bus, run) can write a trace: one caller, the demo driver."""
    root = Path(__file__).resolve().parents[2] / "edge"
    callers = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "SimTraceRecorder(" in p.read_text() and p.name != "trace.py"
    )
    assert callers == ["daemon/demo.py"]
