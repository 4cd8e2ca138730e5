"""Pydantic models of the whole appliance config (the YAML a technician edits).

Every model forbids unknown keys, so a typo is an error, not a silently ignored setting.
Cross-references (zones → beacons, receivers → zones, campaigns → zones) are checked by
``edge.config.checks`` so each finding can name its own line.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="lower-case id")]
Position = tuple[float, float]

DEFAULT_SENSITIVE = (
    "health",
    "medication",
    "insurance",
    "ethnicity",
    "religion",
    "politics",
    "sexuality",
    "finance_distress",
)


class Strict(BaseModel):
    """Base: unknown keys are errors; values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True)


class Zone(Strict):
    """A shelf zone: a rectangle on the floor plan with the reference beacons inside it."""

    id: Id
    name: str
    rect: tuple[float, float, float, float] = Field(description="x, y, width, depth in metres")
    beacons: list[Id] = Field(default_factory=list, description="ids of store.beacons in it")

    @field_validator("rect")
    @classmethod
    def _positive_size(cls, v: tuple[float, float, float, float]) -> tuple[float, ...]:
        if v[2] <= 0 or v[3] <= 0:
            raise ValueError("width and depth must be > 0")
        return v

    def contains(self, x: float, y: float) -> bool:
        """True when the point lies inside the zone's rectangle."""
        zx, zy, w, d = self.rect
        return zx <= x <= zx + w and zy <= y <= zy + d

    @property
    def centre(self) -> Position:
        """Centre of the rectangle."""
        zx, zy, w, d = self.rect
        return (zx + w / 2, zy + d / 2)


class IBeaconId(Strict):
    """Apple iBeacon identity."""

    kind: Literal["ibeacon"]
    uuid: str = Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    major: int = Field(ge=0, le=65535)
    minor: int = Field(ge=0, le=65535)


class EddystoneUidId(Strict):
    """Eddystone-UID identity (hex strings)."""

    kind: Literal["eddystone_uid"]
    namespace: str = Field(pattern=r"^[0-9a-f]{20}$")
    instance: str = Field(pattern=r"^[0-9a-f]{12}$")


class AltBeaconId(Strict):
    """AltBeacon identity (20-byte beacon id, hex)."""

    kind: Literal["altbeacon"]
    beacon_id: str = Field(pattern=r"^[0-9a-f]{40}$")
    mfg_id: int = Field(default=0xFFFF, ge=0, le=0xFFFF)


BeaconIdentity = Annotated[IBeaconId | EddystoneUidId | AltBeaconId, Field(discriminator="kind")]


class Beacon(Strict):
    """A fixed reference beacon on a shelf, with its radio calibration."""

    id: Id
    identity: BeaconIdentity
    position: Position
    rssi_at_1m: int = Field(default=-59, ge=-100, le=0, description="measured RSSI at 1 m, dBm")
    path_loss_exponent: float = Field(default=2.2, ge=1.0, le=6.0)
    interval_ms: int = Field(default=350, ge=20, le=10_000)
    profile: str | None = Field(default=None, description="firmware profile name, if any")


class Receiver(Strict):
    """A BLE listener in the store (this appliance's radio, or a peer's) at a known place."""

    id: Id
    zone: Id
    position: Position
    rssi_offset_db: float = Field(default=0.0, ge=-30, le=30)
    rssi_at_1m: int = Field(default=-59, ge=-100, le=0)
    path_loss_exponent: float = Field(default=2.2, ge=1.0, le=6.0)


class Screen(Strict):
    """A shelf screen and the zone it faces."""

    id: Id
    zone: Id


class Store(Strict):
    """The store layout: floor plan, zones, reference beacons, receivers and screens."""

    name: str
    size: tuple[float, float] = Field(description="width, depth of the floor in metres")
    entrance: Position = (0.0, 0.0)
    zones: list[Zone] = Field(min_length=1)
    beacons: list[Beacon] = Field(default_factory=list)
    receivers: list[Receiver] = Field(default_factory=list)
    screens: list[Screen] = Field(default_factory=list)


AdapterName = Annotated[
    str, Field(pattern=r"^hci[0-9]{1,3}$", description="BlueZ adapter name, e.g. hci0")
]


class RadioAdapter(Strict):
    """One BLE adapter the appliance scans with, and the receiver (antenna place) it is."""

    adapter: AdapterName
    receiver: Id = Field(description="store.receivers id this adapter stands for")


class Radio(Strict):
    """BLE scanning and token frame identifiers (BRIEF §4)."""

    enabled: bool = Field(default=False, description="scan with the BLE adapter(s)")
    adapter: AdapterName = "hci0"
    receiver: Id | None = Field(default=None, description="store.receivers id of this radio")
    adapters: list[RadioAdapter] = Field(
        default_factory=list,
        description="several adapters, one scanner (and one receiver) each; when empty, "
        "`adapter` and `receiver` describe the only one",
    )
    silence_s: float = Field(
        default=60.0,
        ge=1.0,
        le=3600.0,
        description="scanner watchdog: no advert for this long while store.beacons are "
        "configured restarts the scan, then power-cycles the adapter",
    )
    token_service_uuid: int = Field(default=0xFFF4, ge=0, le=0xFFFF)
    token_company_id: int = Field(default=0xFFFF, ge=0, le=0xFFFF)
    accept: Literal["both", "service_data", "manufacturer_data"] = "both"

    def scan_adapters(self) -> list[RadioAdapter]:
        """The adapters to scan with: ``adapters``, else ``adapter`` as ``receiver``."""
        if self.adapters:
            return list(self.adapters)
        if self.receiver is None:
            return []
        return [RadioAdapter(adapter=self.adapter, receiver=self.receiver)]


class Privacy(Strict):
    """Privacy parameters; published in the device state."""

    raw_retention_s: float = Field(default=30.0, gt=0, le=30.0)
    k: int = Field(default=5, ge=2, le=1000)
    epsilon_per_day: float = Field(default=1.0, gt=0, le=2.0)
    window_s: int = Field(default=900, ge=60, le=86_400)
    max_windows_per_day: int = Field(
        default=96,
        ge=1,
        le=1440,
        description="aggregate windows this device publishes per local day at most (enforced "
        "by the ε ledger; a person may be in all of them, so each gets ε_day / this)",
    )
    token_rotation_s: int = Field(
        default=600,
        ge=60,
        le=86_400,
        description="how often phones rotate their token; sets how many tokens one person "
        "can show in one window",
    )
    max_zones_per_window: int = Field(default=3, ge=1, le=50)
    release: Literal["day", "window"] = Field(
        default="day",
        description="day: one release per site-local day's counting hours (named statistics, "
        "docs/PRIVACY.md); window: every window_s window per zone (noise-dominated)",
    )
    day_hours: tuple[int, int] = Field(
        default=(0, 24),
        description="local counting hours [open, close) of the day release; only tokens seen "
        "within them count, and fewer hours mean fewer tokens per person and less noise",
    )
    period_days: int = Field(
        default=7,
        ge=0,
        le=28,
        description="days summed by the period release (footfall over calendar-aligned periods "
        "of this many days, each day charged its share of epsilon_per_day; docs/PRIVACY.md); "
        "0 = no period release (footfall goes back into the day release)",
    )
    anonymous_footfall: bool = False

    @field_validator("period_days")
    @classmethod
    def _period_ok(cls, v: int) -> int:
        if v == 1:
            raise ValueError(
                "period_days must be 0 (off) or 2-28 (a 1-day period is the day release)"
            )
        return v

    @field_validator("day_hours")
    @classmethod
    def _hours_ok(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 0 <= v[0] < v[1] <= 24:
            raise ValueError("day_hours must be [open, close) with 0 <= open < close <= 24")
        return v

    day_keys: dict[str, str] = Field(
        default_factory=dict,
        description="site day keys YYYY-MM-DD → 32 hex bytes; normally pushed by set_keys",
    )

    @field_validator("day_keys")
    @classmethod
    def _keys_ok(cls, v: dict[str, str]) -> dict[str, str]:
        for day, key in v.items():
            dt.date.fromisoformat(day)
            if not re.fullmatch(r"[0-9a-fA-F]{64}", key):
                raise ValueError(f"key for {day} must be 32 bytes as 64 hex digits")
        return v


class Presence(Strict):
    """Zone estimation and visit tracking."""

    token_ttl_s: float = Field(
        default=30.0, gt=0, le=30.0, description="forget a token this long after its last sighting"
    )
    stale_anchor_s: float = Field(default=8.0, gt=0, le=30.0)
    switch_ratio: float = Field(
        default=4.0,
        ge=1.0,
        le=1000.0,
        description="a zone takes over when it is this many times likelier than the current "
        "one: higher means fewer false switches but slower zone changes; 12 suits two "
        "receivers and two beacons per zone, the default 4 sparser placements "
        "(docs/OPERATIONS.md)",
    )
    dwell_update_s: float = Field(default=10.0, gt=0, le=600)
    max_tokens: int = Field(default=20_000, ge=10, le=1_000_000)


class Policy(Strict):
    """Explicit offer rules (BRIEF §5)."""

    min_dwell_s: float = Field(default=15.0, ge=0)
    max_offers_per_visit: int = Field(default=2, ge=0)
    max_offers_per_day: int = Field(default=4, ge=0)
    cooldown_s: float = Field(default=180.0, ge=0)
    screen_rate_per_min: int = Field(default=6, ge=0)
    holdout_share: float = Field(default=0.10, ge=0, le=0.5)
    max_zone_distance: int = Field(default=1, ge=0, le=2)
    min_model_score: float = Field(default=0.5, ge=0, le=1)
    offer_validity_s: int = Field(default=1800, ge=60)
    sensitive_categories: list[str] = Field(default_factory=lambda: list(DEFAULT_SENSITIVE))


class Daypart(Strict):
    """When a campaign runs: weekdays (0 = Monday) and local hours [start, end)."""

    days: list[int] = Field(default_factory=lambda: list(range(7)))
    start_hour: int = Field(default=0, ge=0, le=23)
    end_hour: int = Field(default=24, ge=1, le=24)


class Campaign(Strict):
    """A coupon campaign: what it offers, where its product is, when it runs."""

    id: Id
    category: str = Field(description="coupon category, see edge.decide.features.CATEGORIES")
    zone: Id = Field(description="zone of the product")
    headline: str = Field(max_length=80)
    body: str = Field(default="", max_length=200)
    url: str = Field(pattern=r"^https://")
    validity: Literal["2h", "1d"] = "1d"
    colour: str = Field(default="#1f6f5c", pattern=r"^#[0-9a-fA-F]{6}$")
    schedule: Daypart = Field(default_factory=Daypart)
    enabled: bool = True


class PrivacyNotice(Strict):
    """The privacy notice shown on every scene, in English and German."""

    en: str = (
        "Privacy: this screen senses Bluetooth only from shoppers who opted in via the store "
        "app. No cameras. Only anonymous statistics leave it. Data kept max. 30 s. "
        "Opt out in the app."
    )
    de: str = (
        "Datenschutz: Dieser Bildschirm erfasst Bluetooth nur von Kund:innen, die in der App "
        "eingewilligt haben. Keine Kameras. Nur anonyme Statistik verlässt das Gerät. "
        "Speicherung max. 30 s. Widerruf in der App."
    )


class Display(Strict):
    """The shelf screen."""

    enabled: bool = True
    screen: Id | None = Field(default=None, description="store.screens id this device drives")
    width: int = Field(default=1920, ge=160, le=7680)
    height: int = Field(default=1080, ge=120, le=4320)
    rotation: Literal[0, 90, 180, 270] = 0
    fps: int = Field(default=30, ge=1, le=60)
    slide_s: float = Field(default=8.0, gt=0)
    offer_cue_s: float = Field(default=20.0, gt=0)
    privacy_notice: PrivacyNotice = Field(default_factory=PrivacyNotice)
    fullscreen: bool = True


class MqttTls(Strict):
    """TLS files for the broker connection."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None


class Mqtt(Strict):
    """The store broker connection."""

    enabled: bool = False
    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    tls: MqttTls | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    client_id: str | None = None
    username: str | None = None
    password: str | None = Field(
        default=None,
        description="prefer password_file: a secret in the main YAML is shown to anyone who "
        "can read the config; never part of the config hash",
    )
    password_file: Path | None = Field(
        default=None, description="file holding the broker password (mode 0600, not the YAML)"
    )

    def secret(self) -> str | None:
        """The broker password: from ``password_file`` when set, else ``password``."""
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return self.password

    @property
    def insecure(self) -> bool:
        """True when the link would run without TLS to a host other than loopback."""
        return (
            self.enabled
            and self.tls is None
            and self.host
            not in (
                "localhost",
                "127.0.0.1",
                "::1",
            )
        )


class Commands(Strict):
    """Central command verification."""

    trusted_keys: dict[str, str] = Field(
        default_factory=dict, description="kid → Ed25519 public key, base64 of the raw 32 bytes"
    )
    max_skew_s: int = Field(default=300, ge=0, le=86_400)
    max_payload_bytes: int = Field(default=65_536, ge=256, le=16 * 1024 * 1024)


class Model(Strict):
    """The on-device coupon model; ``None`` paths mean the model shipped in the package."""

    path: Path | None = None
    card: Path | None = None


class Simulator(Strict):
    """The built-in store simulation used by the demo, tests and benchmarks."""

    start: dt.datetime = dt.datetime(2026, 11, 23, 9, 0)
    arrivals_per_hour: float = Field(default=150.0, gt=0, le=20_000)
    opt_in_share: float = Field(default=0.35, ge=0, le=1)
    ios_share: float = Field(default=0.5, ge=0, le=1)
    tier_weights: tuple[float, float, float, float] = (0.1, 0.3, 0.6, 0.0)
    shadowing_sigma_db: float = Field(default=6.0, ge=0, le=20)
    shadowing: Literal["correlated", "iid"] = Field(
        default="correlated",
        description="correlated: AR(1) shadowing per phone-anchor pair, body and fades "
        "(edge/sim/radio_model.py); iid: independent N(0, sigma) per packet, for comparison",
    )
    shadowing_correlation_s: float = Field(default=5.0, gt=0, le=600)
    body_loss_db: float = Field(default=8.0, ge=0, le=30)
    fade_probability: float = Field(default=0.03, ge=0, le=0.5)
    drop_rate: float = Field(default=0.15, ge=0, lt=1)
    adv_interval_s: float = Field(default=1.0, gt=0, le=10)
    app_report_interval_s: float = Field(default=2.0, gt=0, le=60)
    beacon_adv_interval_s: float = Field(default=1.0, gt=0, le=10)
    junk_per_s: float = Field(default=3.0, ge=0)
    zones_per_visit: tuple[int, int] = (3, 7)
    dwell_s: tuple[float, float] = (20.0, 180.0)
    walking_speed_mps: float = Field(default=1.0, gt=0, le=5)
    max_range_m: float = Field(default=25.0, gt=0)


class AppConfig(Strict):
    """The whole appliance config (one YAML file per device)."""

    site: Id
    device: Id
    timezone: str = "Europe/Berlin"
    state_dir: Path = Path("/var/lib/shelfedge")
    store: Store
    radio: Radio = Field(default_factory=Radio)
    privacy: Privacy = Field(default_factory=Privacy)
    presence: Presence = Field(default_factory=Presence)
    policy: Policy = Field(default_factory=Policy)
    campaigns: list[Campaign] = Field(default_factory=list)
    display: Display = Field(default_factory=Display)
    mqtt: Mqtt = Field(default_factory=Mqtt)
    commands: Commands = Field(default_factory=Commands)
    model: Model = Field(default_factory=Model)
    simulator: Simulator = Field(default_factory=Simulator)

    @field_validator("timezone")
    @classmethod
    def _tz_known(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {v!r}") from exc
        return v

    def zone(self, zone_id: str) -> Zone:
        """The zone with this id (KeyError if none)."""
        for z in self.store.zones:
            if z.id == zone_id:
                return z
        raise KeyError(zone_id)
