"""The device service: the one way to change or inspect the running appliance.

Signed MQTT commands, the local control socket (technician tools) and the demo all call
these methods; nothing else mutates components. Every method takes a typed argument and
returns a typed result (frozen dataclasses, validated from JSON by pydantic at the edges).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config

from edge.config import AppConfig, Campaign, config_hash, load_config
from edge.decide.engine import DecisionEngine, SiteContext
from edge.decide.model_worker import ModelWorker
from edge.errors import CommandRejected, ConfigError, ModelError, ShelfEdgeError
from edge.privacy.holders import RawRegistry
from edge.privacy.release import Aggregator
from edge.radio import DayKeys

from .state import StateView
from .supervisor import Supervisor

_LOGGER = logging.getLogger(__name__)

# Sections a running appliance cannot take live (a restart applies them).
RESTART_SECTIONS = (
    "site",
    "device",
    "timezone",
    "state_dir",
    "store",
    "radio",
    "privacy",
    "presence",
    "mqtt",
    "commands",
    "model",
)
LIVE_SECTIONS = ("policy", "campaigns", "display")
MAX_CHUNKS = 256
_STRICT_ARGS = ConfigDict(extra="forbid")


class Screen(Protocol):
    """What the service needs from the display component."""

    def show_test_pattern(self, seconds: float) -> None:
        """Technician test pattern."""
        ...

    def show_message(self, text: str, seconds: float) -> None:
        """Priority message override."""
        ...

    def set_campaigns(self, campaigns: list[Campaign]) -> None:
        """Replace the playlist."""
        ...

    async def snapshot(self, path: Path) -> Path:
        """Write the current frame as PNG."""
        ...


# -- arguments and results -----------------------------------------------------------------


@with_config(_STRICT_ARGS)
@dataclass(frozen=True, slots=True)
class NoArgs:
    """For methods that take nothing."""


@with_config(_STRICT_ARGS)
@dataclass(frozen=True, slots=True)
class SetKeys:
    """Site day keys ``{"YYYY-MM-DD": HEX32}`` with a version that must increase."""

    version: int
    keys: dict[str, str]


@with_config(_STRICT_ARGS)
@dataclass(frozen=True, slots=True)
class SetCampaigns:
    """A new campaign catalogue with a version that must increase."""

    version: int
    campaigns: list[Campaign]


@with_config(_STRICT_ARGS)
@dataclass(frozen=True, slots=True)
class SetContext:
    """Site context for the model (weather, temperature)."""

    weather: str = "sunny"
    temperature_c: float = 20.0
    version: int | None = None


@with_config(_STRICT_ARGS)
@dataclass(frozen=True, slots=True)
class SetConfig:
    """A patch of the live sections (``policy``, ``campaigns``, ``display``), applied atomically."""

    version: int
    config: dict[str, Any]


@with_config(_STRICT_ARGS)
@dataclass(frozen=True, slots=True)
class DisplayMessage:
    """Override the screen with ``text`` for ``seconds`` (0 clears)."""

    text: str
    seconds: float = 60.0


@with_config(_STRICT_ARGS)
@dataclass(frozen=True, slots=True)
class ShowTestPattern:
    """Show the technician test pattern for ``seconds``."""

    seconds: float = 30.0


@with_config(_STRICT_ARGS)
@dataclass(frozen=True, slots=True)
class Calibrate:
    """Reference-beacon statistics over the last ``seconds``; ``record`` adds the samples."""

    seconds: float = 10.0
    record: bool = False


@with_config(_STRICT_ARGS)
@dataclass(frozen=True, slots=True)
class Forget:
    """Drop everything held for one token (hex of the 16-byte RPI)."""

    token: str


@with_config(_STRICT_ARGS)
@dataclass(frozen=True, slots=True)
class UpdateModel:
    """Verify the model at ``path`` (and its card) and swap it in."""

    path: str
    card: str | None = None


@with_config(_STRICT_ARGS)
@dataclass(frozen=True, slots=True)
class InstallModel:
    """A new model in the command itself: the .tflite as base64 and its card.

    A model larger than one command is sent as ``chunks`` commands (``index`` 0..chunks-1, the
    same ``version``, ``card`` and ``sha256`` of the whole file); it is installed when the last
    piece arrives and the reassembled file matches ``sha256``.
    """

    version: int
    model_b64: str
    card: dict[str, Any]
    sha256: str | None = None
    index: int = 0
    chunks: int = 1


@with_config(_STRICT_ARGS)
@dataclass(frozen=True, slots=True)
class Screenshot:
    """Write the current screen as PNG to ``path``."""

    path: str


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload did: sections applied live and sections that need a restart."""

    ok: bool
    applied: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    config_hash: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """A state-setting command's outcome."""

    version: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ForgetResult:
    """Records dropped per raw holder."""

    dropped: dict[str, int]


@dataclass(frozen=True, slots=True)
class ModelResult:
    """The model in use after ``update_model`` (None while a chunked upload is incomplete)."""

    model_id: str | None
    received: int = 1
    chunks: int = 1


@dataclass(frozen=True, slots=True)
class ScreenshotResult:
    """Where the PNG went."""

    path: str


# -- the service ---------------------------------------------------------------------------


class DeviceService:
    """Typed operations on the running appliance (see the module docstring)."""

    def __init__(
        self,
        *,
        cfg: AppConfig,
        config_path: Path | None,
        keys: DayKeys,
        engine: DecisionEngine,
        aggregator: Aggregator,
        model: ModelWorker,
        registry: RawRegistry,
        supervisor: Supervisor,
        state: StateView,
        screen: Callable[[], Screen | None],
        calibration: Callable[[float, bool], dict[str, Any]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cfg = cfg
        self._config_path = config_path
        self._keys = keys
        self._engine = engine
        self._aggregator = aggregator
        self._model = model
        self._registry = registry
        self._supervisor = supervisor
        self._state = state
        self._screen = screen
        self._calibration = calibration
        self._mono = monotonic
        self._campaigns_version = 0
        self._upload_key: tuple[int, str, int] | None = None
        self._upload: list[bytes | None] = []
        self.pending_restart: list[str] = []

    @property
    def cfg(self) -> AppConfig:
        """The running config."""
        return self._cfg

    # -- inspection ---------------------------------------------------------------------

    async def status(self, _args: NoArgs = NoArgs()) -> dict[str, Any]:
        """The local status view: published state plus components and raw holdings."""
        return self._state.local(self._cfg, self.pending_restart)

    async def running_config(self, _args: NoArgs = NoArgs()) -> dict[str, Any]:
        """The running config (secrets removed) and the file it came from (technician tools)."""
        data = self._cfg.model_dump(mode="json")
        data["mqtt"].pop("password", None)
        return {
            "path": None if self._config_path is None else str(self._config_path),
            "config": data,
            "live_sections": list(LIVE_SECTIONS),
        }

    # -- config -------------------------------------------------------------------------

    async def reload(self, _args: NoArgs = NoArgs()) -> ReloadResult:
        """Re-read the config file; keep the running one when the new one is invalid."""
        if self._config_path is None:
            return ReloadResult(False, error="no config file to reload (started without one)")
        try:
            new = load_config(self._config_path)
        except ConfigError as exc:
            _LOGGER.error("reload rejected, keeping the running config:\n%s", exc)
            return ReloadResult(False, error=f"invalid config ({len(exc.problems)} problems)")
        return self.apply_config(new)

    def apply_config(self, new: AppConfig) -> ReloadResult:
        """Apply a validated config: live sections now, the rest reported as restart needed."""
        old = self._cfg
        changed = [
            s for s in (*LIVE_SECTIONS, *RESTART_SECTIONS) if getattr(old, s) != getattr(new, s)
        ]
        restart = [s for s in RESTART_SECTIONS if s in changed]
        for comp in self._supervisor.names():
            part = self._supervisor.component(comp)
            if part is not None and part.apply_config(new) and comp not in restart:
                restart.append(comp)
        self._engine.apply_config(new)
        self._aggregator.set_campaigns([c.id for c in new.campaigns])
        self._cfg = new
        self._state.config_changed(new)
        self.pending_restart = sorted(set(self.pending_restart) | set(restart))
        self._state.set_pending_restart(self.pending_restart)
        applied = [s for s in LIVE_SECTIONS if s in changed]
        if self.pending_restart:
            _LOGGER.warning(
                "config reloaded; applied: %s; restart needed for: %s",
                ", ".join(applied) or "nothing changed",
                ", ".join(self.pending_restart),
            )
        else:
            _LOGGER.info("config reloaded; applied: %s", ", ".join(applied) or "nothing changed")
        return ReloadResult(True, applied, list(self.pending_restart), config_hash(new))

    async def set_config(self, args: SetConfig) -> ReloadResult:
        """Validate a patch of the live sections against the running config; apply or refuse."""
        unknown = sorted(set(args.config) - set(LIVE_SECTIONS))
        if unknown:
            raise CommandRejected(
                "bad_args", f"only {', '.join(LIVE_SECTIONS)} can be set remotely, not {unknown}"
            )
        merged = self._cfg.model_dump(mode="json")
        merged.update(args.config)
        try:
            new = AppConfig.model_validate(merged)
        except ValidationError as exc:
            where = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise CommandRejected("bad_args", where) from None
        from edge.config.checks import cross_check

        findings = cross_check(new)
        if findings:
            path, msg = findings[0]
            raise CommandRejected("bad_args", f"{'.'.join(map(str, path))}: {msg}")
        return self.apply_config(new)

    async def screenshot_png(self) -> dict[str, Any]:
        """The current screen as base64 PNG, within the command size bound (``screenshot``)."""
        return await self._png(self._cfg.commands.max_payload_bytes * 3 // 4 - 1024)

    async def snapshot_png(self, _args: NoArgs = NoArgs()) -> dict[str, Any]:
        """The current screen as base64 PNG, any size (local socket: ``display snapshot``)."""
        return await self._png(None)

    async def _png(self, limit: int | None) -> dict[str, Any]:
        import base64

        path = self._cfg.state_dir / "screenshot.png"
        await self.screenshot(Screenshot(str(path)))
        data = path.read_bytes()
        path.unlink(missing_ok=True)
        if limit is not None and len(data) > limit:
            raise CommandRejected("too_large", f"screenshot is {len(data)} bytes, over {limit}")
        return {"png_base64": base64.b64encode(data).decode(), "bytes": len(data)}

    # -- central commands -----------------------------------------------------------------

    async def set_keys(self, args: SetKeys) -> Applied:
        """Install site day keys (version must increase)."""
        if args.version <= self._keys.version:
            raise CommandRejected(
                "stale_version", f"keys version {args.version} <= current {self._keys.version}"
            )
        try:
            fresh = DayKeys.from_hex(args.keys, args.version)
        except ValueError as exc:
            raise CommandRejected("bad_args", "keys must map YYYY-MM-DD to 64 hex digits") from exc
        self._keys.replace({d: fresh.key(d) for d in fresh.days}, args.version)
        return Applied(args.version, {"days": [d.isoformat() for d in fresh.days]})

    async def set_campaigns(self, args: SetCampaigns) -> Applied:
        """Replace the campaign catalogue (decisions, aggregates and the screen)."""
        if args.version <= self._campaigns_version:
            raise CommandRejected(
                "stale_version",
                f"campaigns version {args.version} <= current {self._campaigns_version}",
            )
        new = self._cfg.model_copy(update={"campaigns": list(args.campaigns)})
        from edge.config.checks import cross_check

        findings = cross_check(new)
        if findings:
            path, msg = findings[0]
            raise CommandRejected("bad_args", f"{'.'.join(map(str, path))}: {msg}")
        self._campaigns_version = args.version
        self._engine.set_campaigns(list(args.campaigns))
        self._aggregator.set_campaigns([c.id for c in args.campaigns])
        screen = self._screen()
        if screen is not None:
            screen.set_campaigns(list(args.campaigns))
        self._cfg = new
        return Applied(args.version, {"campaigns": len(args.campaigns)})

    async def set_context(self, args: SetContext) -> Applied:
        """Set the site context the model sees."""
        self._engine.set_context(SiteContext(args.weather, args.temperature_c))
        return Applied(args.version, {"weather": args.weather, "temperature_c": args.temperature_c})

    async def display_message(self, args: DisplayMessage) -> Applied:
        """Show a priority message on the screen."""
        screen = self._screen()
        if screen is None:
            raise CommandRejected("unavailable", "the display is not running")
        screen.show_message(args.text, args.seconds)
        return Applied()

    async def test_pattern(self, args: ShowTestPattern) -> Applied:
        """Show the technician test pattern on the screen."""
        screen = self._screen()
        if screen is None:
            raise CommandRejected("unavailable", "the display is not running")
        screen.show_test_pattern(args.seconds)
        return Applied()

    async def calibrate(self, args: Calibrate) -> dict[str, Any]:
        """Beacon statistics, zone counts ≥ k only, never a phone (``shelfedge calibrate``)."""
        if self._calibration is None:
            raise CommandRejected("unavailable", "calibration is not available here")
        return self._calibration(max(1.0, args.seconds), args.record)

    async def forget(self, args: Forget) -> ForgetResult:
        """Drop everything every raw holder holds for a token."""
        try:
            token = bytes.fromhex(args.token)
        except ValueError as exc:
            raise CommandRejected("bad_args", "token must be hex") from exc
        if len(token) != 16:
            raise CommandRejected("bad_args", "token must be 16 bytes (32 hex digits)")
        return ForgetResult(self._registry.forget(token))

    async def update_model(self, args: UpdateModel) -> ModelResult:
        """Verify and swap in a new model; the old one stays when the new one is rejected."""
        try:
            model_id = await self._model.replace(
                Path(args.path), Path(args.card) if args.card else None
            )
        except ModelError as exc:
            raise CommandRejected("model_rejected", str(exc)) from exc
        self._state.config_changed(self._cfg)
        return ModelResult(model_id)

    async def install_model(self, args: InstallModel) -> ModelResult:
        """Verify and swap in a model sent in the command; the old one stays if rejected."""
        import base64
        import binascii
        import hashlib

        try:
            piece = base64.b64decode(args.model_b64, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise CommandRejected("bad_args", "model_b64 is not base64") from exc
        if not (1 <= args.chunks <= MAX_CHUNKS and 0 <= args.index < args.chunks):
            raise CommandRejected("bad_args", f"need 0 <= index < chunks <= {MAX_CHUNKS}")
        if args.chunks > 1 and args.sha256 is None:
            raise CommandRejected("bad_args", "a chunked model needs the sha256 of the whole file")
        key = (args.version, args.sha256 or "", args.chunks)
        if self._upload_key != key:  # a new upload replaces an unfinished one
            self._upload_key, self._upload = key, [None] * args.chunks
        self._upload[args.index] = piece
        received = sum(p is not None for p in self._upload)
        if received < args.chunks:
            return ModelResult(None, received, args.chunks)
        data = b"".join(p for p in self._upload if p is not None)
        self._upload_key, self._upload = None, []
        if args.sha256 is not None and hashlib.sha256(data).hexdigest() != args.sha256:
            raise CommandRejected("model_rejected", "reassembled model does not match sha256")
        try:
            model_id = await self._model.install(data, args.card)
        except ModelError as exc:
            raise CommandRejected("model_rejected", str(exc)) from exc
        self._state.config_changed(self._cfg)
        return ModelResult(model_id, args.chunks, args.chunks)

    async def screenshot(self, args: Screenshot) -> ScreenshotResult:
        """Write the current screen as PNG."""
        screen = self._screen()
        if screen is None:
            raise CommandRejected("unavailable", "the display is not running")
        try:
            path = await screen.snapshot(Path(args.path))
        except ShelfEdgeError as exc:
            raise CommandRejected("failed", str(exc)) from exc
        return ScreenshotResult(str(path))

    # -- JSON edge (control socket, commands) -----------------------------------------------

    def methods(self) -> Mapping[str, tuple[type[Any], Callable[[Any], Awaitable[Any]]]]:
        """Method name → (argument type, bound method)."""
        return {
            "status": (NoArgs, self.status),
            "config": (NoArgs, self.running_config),
            "reload": (NoArgs, self.reload),
            "set_keys": (SetKeys, self.set_keys),
            "set_campaigns": (SetCampaigns, self.set_campaigns),
            "set_context": (SetContext, self.set_context),
            "set_config": (SetConfig, self.set_config),
            "display_message": (DisplayMessage, self.display_message),
            "test_pattern": (ShowTestPattern, self.test_pattern),
            "calibrate": (Calibrate, self.calibrate),
            "forget": (Forget, self.forget),
            "update_model": (UpdateModel, self.update_model),
            "install_model": (InstallModel, self.install_model),
            "screenshot": (Screenshot, self.screenshot),
            "snapshot_png": (NoArgs, self.snapshot_png),
        }

    async def dispatch(
        self, method: str, args: dict[str, Any], *, strict: bool = False, published: bool = False
    ) -> dict[str, Any]:
        """Validate JSON arguments, call the method, return a JSON-ready result.

        ``strict`` (signed commands) takes JSON types as they are ("5" is not 5);
        ``published`` makes ``status`` answer with the published state only.
        """
        if method == "status" and published:
            if args:
                raise CommandRejected("bad_args", "status takes no arguments")
            return self._state.published()
        entry = self.methods().get(method)
        if entry is None:
            raise CommandRejected("unknown_method", f"unknown method {method!r}")
        arg_type, fn = entry
        try:
            adapter = _adapter(arg_type)
            # strict: JSON types as sent (JSON mode: objects may fill dataclasses and models)
            parsed = (
                adapter.validate_json(json.dumps(args), strict=True)
                if strict
                else adapter.validate_python(args)
            )
        except ValidationError as exc:
            where = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '<args>'}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise CommandRejected("bad_args", where) from None
        result = await fn(parsed)
        if isinstance(result, dict):
            return result
        out: dict[str, Any] = _adapter(type(result)).dump_python(result, mode="json")
        return out


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(t: type[Any]) -> TypeAdapter[Any]:
    ad = _ADAPTERS.get(t)
    if ad is None:
        ad = _ADAPTERS[t] = TypeAdapter(t)
    return ad
