"""Cross-reference checks that a single field validator cannot see.

Each finding carries the field path so the loader can name the YAML line.
"""

from __future__ import annotations

from collections import Counter

from edge.config.models import AppConfig

Path = tuple[str | int, ...]


def cross_check(cfg: AppConfig) -> list[tuple[Path, str]]:
    """Return (field path, message) for every broken reference or duplicate id."""
    out: list[tuple[Path, str]] = []
    store = cfg.store
    zone_ids = {z.id for z in store.zones}
    beacon_ids = {b.id for b in store.beacons}
    receiver_ids = {r.id for r in store.receivers}
    screen_ids = {s.id for s in store.screens}

    for name, ids in (
        ("zones", [z.id for z in store.zones]),
        ("beacons", [b.id for b in store.beacons]),
        ("receivers", [r.id for r in store.receivers]),
        ("screens", [s.id for s in store.screens]),
    ):
        for dup, n in Counter(ids).items():
            if n > 1:
                idx = max(i for i, x in enumerate(ids) if x == dup)
                out.append((("store", name, idx, "id"), f"duplicate id {dup!r}"))

    owner: dict[str, str] = {}
    for zi, zone in enumerate(store.zones):
        for bi, bid in enumerate(zone.beacons):
            path: Path = ("store", "zones", zi, "beacons", bi)
            if bid not in beacon_ids:
                known = ", ".join(sorted(beacon_ids)) or "none defined"
                out.append((path, f"unknown beacon {bid!r} (store.beacons has: {known})"))
            elif bid in owner and owner[bid] != zone.id:
                out.append((path, f"beacon {bid!r} is already in zone {owner[bid]!r}"))
            else:
                owner[bid] = zone.id

    for ri, rec in enumerate(store.receivers):
        if rec.zone not in zone_ids:
            out.append((("store", "receivers", ri, "zone"), f"unknown zone {rec.zone!r}"))
    for si, scr in enumerate(store.screens):
        if scr.zone not in zone_ids:
            out.append((("store", "screens", si, "zone"), f"unknown zone {scr.zone!r}"))
    for ci, camp in enumerate(cfg.campaigns):
        if camp.zone not in zone_ids:
            out.append((("campaigns", ci, "zone"), f"unknown zone {camp.zone!r}"))
    for dup, n in Counter(c.id for c in cfg.campaigns).items():
        if n > 1:
            out.append((("campaigns",), f"duplicate campaign id {dup!r}"))

    if cfg.radio.receiver is not None and cfg.radio.receiver not in receiver_ids:
        out.append((("radio", "receiver"), f"unknown receiver {cfg.radio.receiver!r}"))
    out.extend(_radio_adapters(cfg, receiver_ids))
    if cfg.display.screen is not None and cfg.display.screen not in screen_ids:
        out.append((("display", "screen"), f"unknown screen {cfg.display.screen!r}"))
    if cfg.presence.token_ttl_s > cfg.privacy.raw_retention_s:
        out.append(
            (
                ("presence", "token_ttl_s"),
                f"must not exceed privacy.raw_retention_s ({cfg.privacy.raw_retention_s} s)",
            )
        )
    w, d = store.size
    for zi, zone in enumerate(store.zones):
        x, y, zw, zd = zone.rect
        if x < 0 or y < 0 or x + zw > w + 1e-9 or y + zd > d + 1e-9:
            out.append((("store", "zones", zi, "rect"), f"zone lies outside the {w}×{d} m floor"))
    return out


def _radio_adapters(cfg: AppConfig, receiver_ids: set[str]) -> list[tuple[Path, str]]:
    """Each adapter names a known receiver; no adapter or receiver twice; one way to say it."""
    radio = cfg.radio
    out: list[tuple[Path, str]] = []
    if radio.adapters and radio.receiver is not None:
        out.append(
            (("radio", "receiver"), "set either radio.adapters or radio.adapter/receiver, not both")
        )
    seen_adapters: set[str] = set()
    seen_receivers: set[str] = set()
    for ai, ad in enumerate(radio.adapters):
        if ad.receiver not in receiver_ids:
            known = ", ".join(sorted(receiver_ids)) or "none defined"
            out.append(
                (
                    ("radio", "adapters", ai, "receiver"),
                    f"unknown receiver {ad.receiver!r} (store.receivers has: {known})",
                )
            )
        if ad.adapter in seen_adapters:
            out.append((("radio", "adapters", ai, "adapter"), f"adapter {ad.adapter!r} twice"))
        if ad.receiver in seen_receivers:
            out.append((("radio", "adapters", ai, "receiver"), f"receiver {ad.receiver!r} twice"))
        seen_adapters.add(ad.adapter)
        seen_receivers.add(ad.receiver)
    if radio.enabled and not radio.scan_adapters():
        out.append(
            (
                ("radio", "enabled"),
                "radio.enabled needs radio.receiver (or radio.adapters): the store.receivers "
                "id each adapter stands for",
            )
        )
    return out
