"""The device state: what is published (pinned, coarse) and what ``status`` shows locally.

The retained ``state`` topic is read by anyone on the store broker, so it carries no exact
per-shopper figure: no live token counts, no offer or decision counts, no sighting counts
(comparing two states would bypass the aggregates' noise and k). Errors are named by class,
never by message. ``PUBLISHED_FIELDS`` pins every key allowed out; a test checks it. The
local view (control socket, technicians over SSH) adds the supervisor's view of each
component, the raw holdings per holder (counts and ages only) and local counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from edge import __version__
from edge.config import AppConfig, config_hash
from edge.privacy.budget import PrivacyFigures
from edge.privacy.holders import RawRegistry

from .supervisor import Supervisor

# Every key the published state may carry ("*" = any component name).
PUBLISHED_FIELDS: dict[str, Any] = {
    "online": None,
    "reason": None,
    "version": None,
    "site": None,
    "device": None,
    "config_hash": None,
    "model_id": None,
    "uptime_s": None,
    "health": {
        "ok": None,
        "components": {"*": {"state": None, "restarts": None, "last_error": None}},
        "outbox": {"pending": None, "recovered": None},
        "beacons_heard": None,
        "pending_restart": None,
        "insecure_transport": None,
    },
    "privacy": {
        "k": None,
        "window_s": None,
        "raw_retention_s": None,
        "epsilon_per_day": None,
        "epsilon_per_window": None,
        "epsilon_worst_case_per_day": None,
        "epsilon_spent_today": None,
        "epsilon_remaining_today": None,
        "windows_published_today": None,
        "anonymous_footfall": None,
    },
}


def _fields_outside(value: Any, allowed: Any, path: str = "") -> list[str]:
    """Keys of ``value`` not allowed by the pinned tree (empty = all allowed)."""
    if allowed is None or not isinstance(value, Mapping):
        return []
    out: list[str] = []
    for key, sub in value.items():
        spec = allowed.get(key, allowed.get("*", ...)) if isinstance(allowed, dict) else ...
        where = f"{path}.{key}" if path else str(key)
        if spec is ...:
            out.append(where)
        else:
            out.extend(_fields_outside(sub, spec, where))
    return out


def unpinned_fields(state: Mapping[str, Any]) -> list[str]:
    """Dotted paths in a state that ``PUBLISHED_FIELDS`` does not allow."""
    return _fields_outside(state, PUBLISHED_FIELDS)


class StateView:
    """Builds the published state and the local status view from the running parts."""

    def __init__(
        self,
        *,
        cfg: AppConfig,
        supervisor: Supervisor,
        registry: RawRegistry,
        privacy: Callable[[], PrivacyFigures],
        model_id: Callable[[], str | None],
        outbox: Callable[[], Mapping[str, Any] | None],
        beacons_heard: Callable[[], int],
        local_counters: Callable[[], dict[str, Any]],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._supervisor = supervisor
        self._registry = registry
        self._privacy = privacy
        self._model_id = model_id
        self._outbox = outbox
        self._beacons_heard = beacons_heard
        self._local_counters = local_counters
        self._mono = monotonic
        self._started = time.monotonic()
        self._pending_restart: list[str] = []
        self.config_changed(cfg)

    def config_changed(self, cfg: AppConfig) -> None:
        """Recompute what depends on the config (hash computed once per load)."""
        self._cfg = cfg
        self._hash = config_hash(cfg)

    def set_pending_restart(self, sections: list[str]) -> None:
        """Sections changed by a reload that need a restart."""
        self._pending_restart = list(sections)

    def published(self) -> dict[str, Any]:
        """The state as published on ``state`` (only ``PUBLISHED_FIELDS``)."""
        cfg = self._cfg
        statuses = self._supervisor.statuses()
        outbox = self._outbox() or {}
        p = self._privacy()
        return {
            "online": True,
            "version": __version__,
            "site": cfg.site,
            "device": cfg.device,
            "config_hash": self._hash,
            "model_id": self._model_id(),
            "uptime_s": round(time.monotonic() - self._started, 1),
            "health": {
                "ok": all(s.as_dict()["ok"] for s in statuses if s.essential),
                "components": {
                    s.name: {
                        "state": s.state.value,
                        "restarts": s.restarts,
                        "last_error": s.last_error,
                    }
                    for s in statuses
                },
                "outbox": {
                    "pending": outbox.get("pending"),
                    "recovered": outbox.get("recovered_from") is not None,
                },
                "beacons_heard": self._beacons_heard(),
                "pending_restart": list(self._pending_restart),
                "insecure_transport": cfg.mqtt.insecure,
            },
            "privacy": {
                "k": p.k,
                "window_s": p.window_s,
                "raw_retention_s": cfg.privacy.raw_retention_s,
                "epsilon_per_day": p.epsilon_per_day,
                "epsilon_per_window": round(p.epsilon_per_window, 6),
                "epsilon_worst_case_per_day": round(p.epsilon_worst_case_per_day, 6),
                "epsilon_spent_today": round(p.spent_today, 6),
                "epsilon_remaining_today": round(p.remaining_today, 6),
                "windows_published_today": p.windows_today,
                "anonymous_footfall": cfg.privacy.anonymous_footfall,
            },
        }

    def local(self, cfg: AppConfig, pending_restart: list[str]) -> dict[str, Any]:
        """The technician's view: published state plus components, raw holdings, counters."""
        self._pending_restart = list(pending_restart)
        out = self.published()
        mono = self._mono()
        holdings = self._registry.holdings(mono)
        retention = cfg.privacy.raw_retention_s
        out["components"] = {s.name: s.as_dict() for s in self._supervisor.statuses()}
        out["raw_holdings"] = {
            name: {**h.as_dict(), "limit_s": h.limit_s or retention} for name, h in holdings.items()
        }
        out["raw_total"] = sum(h.records for h in holdings.values())
        out["pending_restart"] = list(pending_restart)
        out["local"] = self._local_counters()
        return out
