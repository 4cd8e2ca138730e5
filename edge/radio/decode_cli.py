"""``shelfedge frames decode``: advertisements as JSON lines in, decoded frames as JSON lines out.

A technician's tool (BRIEF §10). Each input line is one advertisement (``address``,
``rssi``, ``manufacturer_data``, ``service_data``, optional ``local_name``, ``tx_power``
and ``ts``; other keys are ignored so recorded traces can be piped in). Each gets exactly
one output line, in order: ``{"kind": K, ...fields}`` as ``frames.classify`` reads the
advert, with an ``error`` for a malformed frame or a malformed line. A bad line never stops
the command; the exit status is 0 unless stdin cannot be read. Token tags are checked with
the daemon's own verification (``keys.DayKeys``) when a site key or a config with day keys
is given; the date rule is the daemon's when the line has a ``ts``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any
from zoneinfo import ZoneInfo

from edge import strict_json
from edge.radio import advert_keys, frames
from edge.radio.keys import DayKeys

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
MAX_LINE_BYTES = 65_536
# A site key given with --site-key is one key, not a dated set: file it under a fixed day.
_SITE_KEY_DAY = dt.date(2000, 1, 1)

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
# Optional scalar input keys: name, accepted types (never a bool), what the error asks for.
_SCALARS: tuple[tuple[str, tuple[type, ...], str], ...] = (
    ("address", (str,), "a string"),
    ("local_name", (str,), "a string"),
    ("rssi", (int,), "an integer"),
    ("tx_power", (int,), "an integer"),
    ("ts", (int, float), "a number"),
)


class LineError(ValueError):
    """One input line is not a valid advertisement; the message says where."""


@dataclass(frozen=True, slots=True)
class DecodeSettings:
    """What the decoder needs from the command line and the config."""

    token_service_uuid: int = 0xFFF4
    token_company_id: int = 0xFFFF
    keys: DayKeys | None = None
    site_key: bool = False  # keys hold one undated site key (--site-key)
    timezone: str = "UTC"


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _payload(where: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise LineError(f"{where}: payload must be a hex string, got {_type_name(value)}")
    if not _HEX.fullmatch(value):
        raise LineError(f"{where}: payload is not hex bytes (an even number of 0-9a-f digits)")
    return bytes.fromhex(value)


def company_id(key: str) -> int:
    """A company id key (see ``advert_keys``); LineError names the field."""
    try:
        return advert_keys.company_id(key)
    except ValueError as exc:
        raise LineError(f"manufacturer_data: {exc}") from None


def service_uuid(key: str) -> str:
    """A service data key as bleak spells it (see ``advert_keys``); LineError names the field."""
    try:
        return advert_keys.service_uuid(key)
    except ValueError as exc:
        raise LineError(f"service_data: {exc}") from None


def _object(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise LineError(f"{where}: must be an object, got {_type_name(value)}")
    return value


def parse_advert(obj: Any) -> tuple[dict[int, bytes], dict[str, bytes], float | None]:
    """Check one decoded input line; manufacturer data, service data and ``ts``."""
    if not isinstance(obj, dict):
        raise LineError(f"expected a JSON object, got {_type_name(obj)}")
    line: Mapping[str, Any] = obj
    for key, kinds, want in _SCALARS:
        value = line.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            raise LineError(f"{key}: must be {want}, got {_type_name(value)}")
    md: dict[int, bytes] = {}
    for key, value in _object("manufacturer_data", line.get("manufacturer_data", {})).items():
        cid = company_id(key)
        if cid in md:
            raise LineError(f"manufacturer_data: company id 0x{cid:04x} given twice")
        md[cid] = _payload(f"manufacturer_data[{key!r}]", value)
    sd: dict[str, bytes] = {}
    for key, value in _object("service_data", line.get("service_data", {})).items():
        uuid = service_uuid(key)
        if uuid in sd:
            raise LineError(f"service_data: UUID {uuid} given twice")
        sd[uuid] = _payload(f"service_data[{key!r}]", value)
    ts = line.get("ts")
    return md, sd, None if ts is None else float(ts)


class FrameDecoder:
    """Turns one input line into one output object (never raises on bad input)."""

    def __init__(self, settings: DecodeSettings) -> None:
        self.settings = settings
        self._tz = ZoneInfo(settings.timezone)

    def tag_ok(self, frame: frames.TokenFrame, ts: float | None) -> bool | None:
        """The token tag checked as the daemon checks it; None without keys."""
        keys = self.settings.keys
        if keys is None:
            return None
        if self.settings.site_key:
            return keys.verify(frame, _SITE_KEY_DAY)
        if ts is not None:
            try:
                today = dt.datetime.fromtimestamp(ts, self._tz).date()
            except (OverflowError, OSError, ValueError) as exc:
                raise LineError(f"ts: {ts!r} is not a usable Unix time ({exc})") from None
            return keys.verify(frame, today)
        # No time stamp: any configured day (verify also tries the day before).
        return any(keys.verify(frame, day) for day in keys.days)

    def fields(self, found: frames.Frame, ts: float | None) -> dict[str, Any]:
        """The output fields of one decoded frame."""
        match found:
            case frames.TokenFrame():
                return {
                    "kind": "token",
                    "version": found.version,
                    "tier": found.tier,
                    "rpi": found.rpi.hex(),
                    "tag_ok": self.tag_ok(found, ts),
                }
            case frames.IBeacon():
                return {
                    "kind": "ibeacon",
                    "uuid": found.uuid,
                    "major": found.major,
                    "minor": found.minor,
                    "tx_power": found.tx_power,
                }
            case frames.AltBeacon():
                return {
                    "kind": "altbeacon",
                    "beacon_id": found.beacon_id,
                    "mfg_id": found.mfg_id,
                    "ref_rssi": found.ref_rssi,
                }
            case frames.EddystoneUid():
                return {
                    "kind": "eddystone_uid",
                    "namespace": found.namespace,
                    "instance": found.instance,
                    "tx_power": found.tx_power,
                }
            case frames.EddystoneUrl():
                return {"kind": "eddystone_url", "url": found.url, "tx_power": found.tx_power}
            case frames.EddystoneTlm():
                return {
                    "kind": "eddystone_tlm",
                    "battery_mv": found.battery_mv,
                    "temperature_c": found.temperature_c,
                    "adv_count": found.adv_count,
                    "uptime_s": found.uptime_s,
                }
            case frames.EddystoneEid():
                return {"kind": "eddystone_eid", "eid": found.eid, "tx_power": found.tx_power}
        raise AssertionError(f"unhandled frame {type(found).__name__}")  # pragma: no cover

    def decode(self, raw: bytes, lineno: int) -> dict[str, Any]:
        """One input line (bytes, newline included or not) → one output object."""
        try:
            out = self._decode(raw)
        except LineError as exc:
            return {"kind": None, "error": f"line {lineno}: {exc}"}
        if "error" in out:  # a malformed frame: say where too
            out["error"] = f"line {lineno}: {out['error']}"
        return out

    def _decode(self, raw: bytes) -> dict[str, Any]:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LineError(f"not UTF-8 (byte {exc.start})") from None
        if not text.strip():
            raise LineError("empty line; expected one JSON object")
        try:
            obj = strict_json.loads(text)
        except strict_json.DuplicateKeyError as exc:
            raise LineError(f"not valid JSON: {exc}") from None
        except ValueError as exc:
            raise LineError(f"not JSON: {exc}") from None
        except RecursionError:
            raise LineError("not JSON: nested too deeply") from None
        md, sd, ts = parse_advert(obj)
        s = self.settings
        found = frames.classify(
            md, sd, token_service_uuid=s.token_service_uuid, token_company_id=s.token_company_id
        )
        if found is None:
            return {"kind": None}
        if isinstance(found, frames.Malformed):
            return {"kind": found.kind, "error": found.error}
        return self.fields(found, ts)


class _TooLong:
    """Stands for an input line longer than ``MAX_LINE_BYTES`` (already skipped)."""


def _next_line(stream: IO[bytes]) -> bytes | _TooLong | None:
    """The next input line, ``_TooLong()`` for an over-long one, None at the end."""
    raw = stream.readline(MAX_LINE_BYTES + 1)
    if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
        while raw and not raw.endswith(b"\n"):  # skip the rest of that line
            raw = stream.readline(MAX_LINE_BYTES)
        return _TooLong()
    return raw or None


def run(settings: DecodeSettings, stdin: IO[bytes], stdout: IO[str]) -> int:
    """Decode every line of ``stdin`` to ``stdout``; 0 unless stdin could not be read."""
    decoder = FrameDecoder(settings)
    lineno = 0
    while True:
        try:
            raw = _next_line(stdin)
        except OSError as exc:
            print(f"shelfedge frames decode: cannot read stdin: {exc}", file=sys.stderr)
            return EXIT_INVALID
        if raw is None:
            return EXIT_OK
        lineno += 1
        if isinstance(raw, _TooLong):
            out: dict[str, Any] = {
                "kind": None,
                "error": f"line {lineno}: longer than {MAX_LINE_BYTES} bytes",
            }
        else:
            out = decoder.decode(raw, lineno)
        try:
            stdout.write(json.dumps(out) + "\n")
            stdout.flush()  # one line out per line in, also when piped from a live scan
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, and keep the interpreter's
            # final flush of stdout from complaining about the closed pipe.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
            return EXIT_OK
        except OSError as exc:
            print(f"shelfedge frames decode: cannot write stdout: {exc}", file=sys.stderr)
            return EXIT_INVALID


def settings_from_args(args: argparse.Namespace) -> DecodeSettings | int:
    """Settings from ``--config`` and ``--site-key``; an exit code when they are unusable."""
    from edge.config import load_config
    from edge.errors import ConfigError

    out = DecodeSettings()
    if args.config:
        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_INVALID
        keys = DayKeys.from_hex(cfg.privacy.day_keys) if cfg.privacy.day_keys else None
        out = DecodeSettings(
            cfg.radio.token_service_uuid, cfg.radio.token_company_id, keys, False, cfg.timezone
        )
    if args.site_key is not None:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", args.site_key):
            print(
                "shelfedge frames decode: --site-key must be 32 bytes as 64 hex digits",
                file=sys.stderr,
            )
            return EXIT_USAGE
        keys = DayKeys({_SITE_KEY_DAY: bytes.fromhex(args.site_key)})
        out = DecodeSettings(out.token_service_uuid, out.token_company_id, keys, True, out.timezone)
    return out


def cmd_decode(args: argparse.Namespace) -> int:
    """``shelfedge frames decode``."""
    settings = settings_from_args(args)
    if isinstance(settings, int):
        return settings
    if sys.stdin is None:  # started with stdin closed
        print("shelfedge frames decode: cannot read stdin: it is closed", file=sys.stderr)
        return EXIT_INVALID
    try:
        return run(settings, sys.stdin.buffer, sys.stdout)
    except KeyboardInterrupt:
        return 130


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``frames decode`` on the CLI's sub-parsers."""
    p = sub.add_parser("frames", help="advertisement frame tools")
    fsub = p.add_subparsers(dest="frames_command", metavar="SUBCOMMAND")

    def usage(_args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return EXIT_USAGE

    p.set_defaults(func=usage)
    d = fsub.add_parser(
        "decode",
        help="decode advertisements: JSON lines on stdin, one JSON line out per line",
        description="Reads one advertisement per line as JSON (address, rssi, "
        "manufacturer_data {company id: hex}, service_data {uuid: hex}; optional local_name, "
        "tx_power, ts) and writes one JSON line per input: {kind, ...fields} or an error.",
    )
    d.add_argument(
        "--site-key", metavar="HEX", help="site day key (64 hex digits) to check token tags"
    )
    d.add_argument(
        "--config",
        metavar="PATH",
        help="config: token UUID/company id, timezone and day keys for token tags",
    )
    d.set_defaults(func=cmd_decode)
