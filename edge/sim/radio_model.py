"""Radio propagation for the simulator: log-distance path loss, shadowing and packet loss.

Owns how loud a transmission is where it is heard: ``rssi = rssi_at_1m + offset -
10·n·log10(d) + N(0, σ)`` with ``d`` clamped to ``MIN_DISTANCE_M``, lost with probability
``drop_rate``, never heard beyond ``max_range_m`` or below ``FLOOR_DBM``. Gaussian and uniform
draws come from a seeded numpy ``Generator`` in large vectorised blocks (``NoiseSource``), and
every transmission consumes a fixed number of draws per listener, so the stream is identical
for a seed however the simulation is stepped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FLOOR_DBM = -100
MIN_DISTANCE_M = 0.3
_BLOCK = 1 << 16


class NoiseSource:
    """Standard normal and uniform [0, 1) numbers, drawn from numpy in blocks."""

    __slots__ = ("_i", "_normals", "_rng", "_uniforms")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._normals: list[float] = []
        self._uniforms: list[float] = []
        self._i = 0

    def take(self, n: int) -> tuple[list[float], list[float]]:
        """``n`` standard normals and ``n`` uniforms."""
        i = self._i
        if i + n > len(self._normals):
            size = max(_BLOCK, n)
            self._normals = self._normals[i:] + self._rng.standard_normal(size).tolist()
            self._uniforms = self._uniforms[i:] + self._rng.random(size).tolist()
            i = 0
        j = i + n
        self._i = j
        return self._normals[i:j], self._uniforms[i:j]


@dataclass(frozen=True, slots=True)
class Link:
    """Calibration of one listener (or transmitter) for the path-loss model."""

    x: float
    y: float
    rssi_at_1m: float  # including any fixed offset of the listener
    exponent: float


class Listeners:
    """A fixed set of places that hear a transmitter at a given point.

    Used twice: the store receivers hearing phones (``Link`` = receiver position and
    calibration), and an iOS phone hearing the reference beacons (``Link`` = beacon position
    and the beacon's calibration, the transmitter side of the same formula).
    """

    __slots__ = ("_a", "_drop", "_k", "_n", "_noise", "_r2", "_sigma", "_xs", "_ys")

    def __init__(
        self,
        links: Sequence[Link],
        *,
        sigma_db: float,
        drop_rate: float,
        max_range_m: float,
        noise: NoiseSource,
    ) -> None:
        self._xs = [lk.x for lk in links]
        self._ys = [lk.y for lk in links]
        self._a = [lk.rssi_at_1m for lk in links]
        # log10(d) = log10(d²) / 2, so the squared distance needs no square root.
        self._k = [5.0 * lk.exponent for lk in links]
        self._n = len(links)
        self._sigma = sigma_db
        self._drop = drop_rate
        self._r2 = max_range_m * max_range_m
        self._noise = noise

    def __len__(self) -> int:
        return self._n

    def mean_rssi(self, index: int, x: float, y: float) -> float:
        """The noiseless RSSI at listener ``index`` from a transmitter at (x, y)."""
        d2 = (x - self._xs[index]) ** 2 + (y - self._ys[index]) ** 2
        d2 = max(d2, MIN_DISTANCE_M * MIN_DISTANCE_M)
        return self._a[index] - self._k[index] * math.log10(d2)

    def hear(self, x: float, y: float, extra_db: float = 0.0) -> list[tuple[int, int]]:
        """``(listener index, rssi dBm)`` for each listener that hears one transmission."""
        n = self._n
        normals, uniforms = self._noise.take(n)
        out: list[tuple[int, int]] = []
        drop, r2, sigma = self._drop, self._r2, self._sigma
        xs, ys, a, k = self._xs, self._ys, self._a, self._k
        min2 = MIN_DISTANCE_M * MIN_DISTANCE_M
        log10 = math.log10
        for i in range(n):
            dx = x - xs[i]
            dy = y - ys[i]
            d2 = dx * dx + dy * dy
            if d2 > r2 or uniforms[i] < drop:
                continue
            rssi = a[i] + extra_db - k[i] * log10(d2 if d2 > min2 else min2) + sigma * normals[i]
            if rssi >= FLOOR_DBM:
                out.append((i, min(round(rssi), 0)))
        return out


class FixedLinks:
    """Transmitters at fixed places (reference beacons) heard by fixed listeners (receivers).

    The noiseless RSSI of every pair is computed once; each transmission adds shadowing and
    packet loss per listener.
    """

    __slots__ = ("_drop", "_means", "_n", "_noise", "_sigma")

    def __init__(
        self,
        transmitters: Sequence[Link],
        listeners: Sequence[tuple[float, float, float]],
        *,
        sigma_db: float,
        drop_rate: float,
        max_range_m: float,
        noise: NoiseSource,
    ) -> None:
        """``listeners`` are ``(x, y, offset_db)``; each transmitter brings its calibration."""
        tx = np.array([(t.x, t.y) for t in transmitters], dtype=float).reshape(-1, 2)
        rx = np.array([(x, y) for x, y, _ in listeners], dtype=float).reshape(-1, 2)
        d = np.hypot(tx[:, None, 0] - rx[None, :, 0], tx[:, None, 1] - rx[None, :, 1])
        a = np.array([t.rssi_at_1m for t in transmitters], dtype=float)[:, None]
        n = np.array([t.exponent for t in transmitters], dtype=float)[:, None]
        off = np.array([o for _, _, o in listeners], dtype=float)[None, :]
        mean = a + off - 10.0 * n * np.log10(np.maximum(d, MIN_DISTANCE_M))
        mean = np.where(d <= max_range_m, mean, np.nan)
        self._means: list[list[float]] = mean.tolist()
        self._n = rx.shape[0]
        self._sigma = sigma_db
        self._drop = drop_rate
        self._noise = noise

    def mean_rssi(self, transmitter: int, listener: int) -> float:
        """Noiseless RSSI of one pair (NaN when out of range)."""
        return self._means[transmitter][listener]

    def hear(self, transmitter: int) -> list[tuple[int, int]]:
        """``(listener index, rssi dBm)`` for each listener that hears one transmission."""
        n = self._n
        normals, uniforms = self._noise.take(n)
        out: list[tuple[int, int]] = []
        row = self._means[transmitter]
        drop, sigma = self._drop, self._sigma
        for i in range(n):
            m = row[i]
            if m != m or uniforms[i] < drop:  # NaN: out of range
                continue
            rssi = m + sigma * normals[i]
            if rssi >= FLOOR_DBM:
                out.append((i, min(round(rssi), 0)))
        return out
