"""Radio propagation for the simulator: log-distance path loss, shadowing and packet loss.

Owns how loud a transmission is where it is heard: ``rssi = rssi_at_1m + offset -
10·n·log10(d) + shadowing`` with ``d`` clamped to ``MIN_DISTANCE_M``, lost with probability
``drop_rate``, never heard beyond ``max_range_m`` or below ``FLOOR_DBM``. Gaussian and uniform
draws come from a seeded numpy ``Generator`` in large vectorised blocks (``NoiseSource``), and
every transmission consumes a fixed number of draws per listener, so the stream is identical
for a seed however the simulation is stepped.

Two shadowing models (``simulator.shadowing``):

``iid``
    ``N(0, σ)`` drawn afresh for every packet. Any averaging filter removes it, which
    flatters every tracker; kept for comparison.

``correlated`` (the default; ``Shadowing``)
    The sum of four terms per packet and transmitter-listener pair:

    1. **Shadowing**, an AR(1) (Gauss-Markov) process per pair with stationary standard
       deviation ``σ_c = √(σ² - 2²)``, so that with term 3 the spread of RSSI around the
       path-loss mean for a fixed pose is σ (``shadowing_sigma_db``), the figure measured at
       fixed distances: ``s ← ρ·s + √(1-ρ²)·σ_c·ε`` with
       ``ρ = exp(-Δt/τ - Δd/d_c)``, so it decorrelates over ``τ = shadowing_correlation_s``
       (5 s) of time (people and trolleys moving through the path) and over ``d_c = 3 m`` of
       the phone's own movement. The exponential autocorrelation is Gudmundson's model
       (M. Gudmundson, "Correlation model for shadow fading in mobile radio systems",
       Electronics Letters 27(23), 1991); exponential spatial decay of indoor shadow fading
       with decorrelation over metres is measured by Jeon et al., "A spatial correlation
       model for shadow fading in indoor multipath propagation", IEEE VTC-Fall 2010. σ of
       4-8 dB matches measured BLE RSSI spread at fixed distances (3.5-5.9 dB in Strzoda,
       Grochla, Połys, ACM MSWiM 2022; "4 to 6 dBm" typical in beacon vendor tests).
    2. **Body shadowing** of the shopper's own body, ``L·(1 - cos θ)/2`` where θ is the
       angle between the way the shopper faces and the direction to the other end of the
       link: 0 dB in front, ``L = body_loss_db`` (8 dB) straight behind. Human-body
       shadowing at 2.4 GHz is of this order (Januszkiewicz, "Analysis of human body
       shadowing effect on wireless sensor networks operating in the 2.4 GHz band",
       Sensors 18(10):3412, 2018; fading depths up to 15 dB and more when a body blocks a
       short indoor link in "Human body shadowing variability in short-range indoor radio
       links at 3-11 GHz band"). Fixed links (beacon to receiver) have no body term.
    3. **Fast fading** per packet, ``N(0, 2 dB)``: BLE advertises on three channels whose
       multipath differs (Faragher & Harle, "Location fingerprinting with Bluetooth Low
       Energy beacons", IEEE JSAC 33(11), 2015), so consecutive packets differ by a few dB
       even when nothing moves.
    4. **Multipath fades**: with probability ``fade_probability`` (3 %) a packet falls into
       a deep fade, exponentially distributed with mean 8 dB, capped at 25 dB (Faragher &
       Harle ibid. report deep per-channel fades; a Rayleigh envelope is ≥ 10 dB below its
       mean ~10 % of the time, of which we keep the rarer, deeper part on top of term 3).

The heading comes from the shopper's path (``WalkPath.heading``): the walking direction,
or a random facing drawn per dwell.
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
class Shadowing:
    """Parameters of the correlated model (module docstring: meaning and sources)."""

    sigma_db: float
    correlation_s: float = 5.0
    correlation_m: float = 3.0
    fast_sigma_db: float = 2.0
    body_loss_db: float = 8.0
    fade_probability: float = 0.03
    fade_mean_db: float = 8.0
    fade_max_db: float = 25.0

    @property
    def correlated_sigma_db(self) -> float:
        """σ of the AR(1) part: what is left of σ after the fast fading."""
        return math.sqrt(max(0.0, self.sigma_db**2 - self.fast_sigma_db**2))


class LinkState:
    """The AR(1) shadowing of one mobile transmitter (or receiver) towards every listener."""

    __slots__ = ("t", "values", "x", "y")

    def __init__(self) -> None:
        self.values: list[float] = []
        self.t = 0.0
        self.x = 0.0
        self.y = 0.0


@dataclass(frozen=True, slots=True)
class Link:
    """Calibration of one listener (or transmitter) for the path-loss model."""

    x: float
    y: float
    rssi_at_1m: float  # including any fixed offset of the listener
    exponent: float


def _fade(u: float, p: float, mean: float, cap: float) -> float:
    """Depth of a multipath fade from one uniform: none unless ``u < p``; then Exp(mean)."""
    if u >= p:
        return 0.0
    return min(cap, -mean * math.log(max(u / p, 1e-12)))


class Listeners:
    """A fixed set of places that hear a transmitter at a given point.

    Used twice: the store receivers hearing phones (``Link`` = receiver position and
    calibration), and an iOS phone hearing the reference beacons (``Link`` = beacon position
    and the beacon's calibration, the transmitter side of the same formula).
    """

    __slots__ = ("_a", "_drop", "_k", "_n", "_noise", "_r2", "_sh", "_sigma", "_xs", "_ys")

    def __init__(
        self,
        links: Sequence[Link],
        *,
        sigma_db: float,
        drop_rate: float,
        max_range_m: float,
        noise: NoiseSource,
        shadowing: Shadowing | None = None,
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
        self._sh = shadowing

    def __len__(self) -> int:
        return self._n

    def mean_rssi(self, index: int, x: float, y: float) -> float:
        """The noiseless RSSI at listener ``index`` from a transmitter at (x, y)."""
        d2 = (x - self._xs[index]) ** 2 + (y - self._ys[index]) ** 2
        d2 = max(d2, MIN_DISTANCE_M * MIN_DISTANCE_M)
        return self._a[index] - self._k[index] * math.log10(d2)

    def hear(
        self,
        x: float,
        y: float,
        extra_db: float = 0.0,
        *,
        state: LinkState | None = None,
        t: float = 0.0,
        heading: float | None = None,
    ) -> list[tuple[int, int]]:
        """``(listener index, rssi dBm)`` for each listener that hears one transmission.

        With the correlated model and a ``state`` (a phone), shadowing continues that
        phone's AR(1) processes at time ``t`` and applies the body term for ``heading``
        (radians, None = no body); without a state (a one-off transmitter) or with the
        i.i.d. model, shadowing is drawn afresh.
        """
        sh = self._sh
        if sh is None or state is None:
            return self._hear_iid(x, y, extra_db)
        n = self._n
        normals, uniforms = self._noise.take(2 * n)
        values = state.values
        sigma = sh.correlated_sigma_db
        if len(values) != n:
            values[:] = [sigma * normals[i] for i in range(n)]
        else:
            moved = math.hypot(x - state.x, y - state.y)
            rho = math.exp(-max(0.0, t - state.t) / sh.correlation_s - moved / sh.correlation_m)
            c = sigma * math.sqrt(max(0.0, 1.0 - rho * rho))
            for i in range(n):
                values[i] = rho * values[i] + c * normals[i]
        state.t, state.x, state.y = t, x, y
        body = sh.body_loss_db * 0.5 if heading is not None else 0.0
        hx = math.cos(heading) if heading is not None else 0.0
        hy = math.sin(heading) if heading is not None else 0.0
        fast = sh.fast_sigma_db
        p, fmean, fcap = sh.fade_probability, sh.fade_mean_db, sh.fade_max_db
        out: list[tuple[int, int]] = []
        drop, r2 = self._drop, self._r2
        xs, ys, a, k = self._xs, self._ys, self._a, self._k
        min2 = MIN_DISTANCE_M * MIN_DISTANCE_M
        log10 = math.log10
        for i in range(n):
            dx = xs[i] - x
            dy = ys[i] - y
            d2 = dx * dx + dy * dy
            if d2 > r2 or uniforms[i] < drop:
                continue
            rssi = a[i] + extra_db - k[i] * log10(d2 if d2 > min2 else min2)
            rssi += values[i] + fast * normals[n + i]
            if body:
                d = math.sqrt(d2)
                cos = (hx * dx + hy * dy) / d if d > 0.0 else 1.0
                rssi -= body * (1.0 - cos)
            u = uniforms[n + i]
            if u < p:
                rssi -= _fade(u, p, fmean, fcap)
            if rssi >= FLOOR_DBM:
                out.append((i, min(round(rssi), 0)))
        return out

    def _hear_iid(self, x: float, y: float, extra_db: float) -> list[tuple[int, int]]:
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
    packet loss per listener. With the correlated model each pair has its own AR(1) process
    in time (people walking through the link), fast fading and fades, but no body term.
    """

    __slots__ = ("_drop", "_last", "_means", "_n", "_noise", "_sh", "_sigma", "_values")

    def __init__(
        self,
        transmitters: Sequence[Link],
        listeners: Sequence[tuple[float, float, float]],
        *,
        sigma_db: float,
        drop_rate: float,
        max_range_m: float,
        noise: NoiseSource,
        shadowing: Shadowing | None = None,
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
        self._sh = shadowing
        self._values: list[list[float]] = [[] for _ in transmitters]
        self._last: list[float] = [0.0 for _ in transmitters]

    def mean_rssi(self, transmitter: int, listener: int) -> float:
        """Noiseless RSSI of one pair (NaN when out of range)."""
        return self._means[transmitter][listener]

    def hear(self, transmitter: int, t: float = 0.0) -> list[tuple[int, int]]:
        """``(listener index, rssi dBm)`` for each listener that hears one transmission."""
        n = self._n
        sh = self._sh
        row = self._means[transmitter]
        out: list[tuple[int, int]] = []
        if sh is None:
            normals, uniforms = self._noise.take(n)
            drop, sigma = self._drop, self._sigma
            for i in range(n):
                m = row[i]
                if m != m or uniforms[i] < drop:  # NaN: out of range
                    continue
                rssi = m + sigma * normals[i]
                if rssi >= FLOOR_DBM:
                    out.append((i, min(round(rssi), 0)))
            return out
        normals, uniforms = self._noise.take(2 * n)
        values = self._values[transmitter]
        sigma = sh.correlated_sigma_db
        if len(values) != n:
            values[:] = [sigma * normals[i] for i in range(n)]
        else:
            rho = math.exp(-max(0.0, t - self._last[transmitter]) / sh.correlation_s)
            c = sigma * math.sqrt(max(0.0, 1.0 - rho * rho))
            for i in range(n):
                values[i] = rho * values[i] + c * normals[i]
        self._last[transmitter] = t
        drop, fast = self._drop, sh.fast_sigma_db
        p, fmean, fcap = sh.fade_probability, sh.fade_mean_db, sh.fade_max_db
        for i in range(n):
            m = row[i]
            if m != m or uniforms[i] < drop:
                continue
            rssi = m + values[i] + fast * normals[n + i]
            u = uniforms[n + i]
            if u < p:
                rssi -= _fade(u, p, fmean, fcap)
            if rssi >= FLOOR_DBM:
                out.append((i, min(round(rssi), 0)))
        return out
