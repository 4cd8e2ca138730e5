"""The numeric core of the presence filter: a forward (HMM) filter over floor cells.

A phone's hidden state is (mode, cell, heading): standing or walking, one of the layout's
cells (``layout.cells``, ≤ 2.5 m squares of every zone), and which of ``HEADINGS`` ways the
shopper faces (their body shadows the anchors behind them). Once a step (≤ 1 s) the state
is predicted (standing ↔ walking, walking hops to neighbouring cells and turns, a new facing
when a shopper stops or starts) and then weighed by the evidence of every anchor heard since
the previous step.

Shadowing is correlated over seconds (people and shelves in the path), so consecutive levels
of one anchor are *not* independent evidence. Each anchor's level is treated as an AR(1)
process around the path-loss mean ``μ`` of the hypothesised cell and heading: given the
previous level ``y'`` (``Δt`` earlier), the new level ``y`` is Gaussian with mean
``μ + ρ(y' − μ)`` and variance ``σ²(1 − ρ²)`` plus the per-packet noise, with
``ρ = exp(−Δt/τ)`` standing and ``exp(−Δt/τ − v·Δt/d)`` walking (the shadowing also
decorrelates with the phone's own movement). Over a dwell this accumulates evidence at the
rate the shadowing actually decorrelates (the generalised-least-squares mean), instead of
counting every packet as new. Squared innovations are capped (``CAP_Q``): a deep multipath
fade costs a hypothesis a bounded amount.

All arrays are fixed at construction; a step is a handful of numpy operations over
(fresh anchors × cells × headings), independent of how many packets arrived.
"""

from __future__ import annotations

import math

import numpy as np

from edge.presence.layout import StoreLayout

HEADINGS = 4  # which way the shopper faces (a state while standing and walking)
BODY_DB = 8.0  # body loss straight behind the shopper (Januszkiewicz 2018, ~8 dB at 2.4 GHz)
SHADOW_DB = 4.0  # σ of the slowly varying shadowing assumed (tuned, see below)
FAST_DB = 2.5  # per-packet spread on top (channel hopping, Faragher & Harle 2015)
MODEL_DB = 1.5  # path-loss model error left over (exponent, the discrete headings)
TAU_S = 5.0  # correlation time of the shadowing (Gudmundson's exponential model)
DECOR_M = 3.0  # decorrelation distance of the shadowing (Jeon et al. 2010)
WALK_MPS = 1.0  # walking speed assumed for the spatial decorrelation
OFFSET_DB = 4.0  # prior σ of a phone's gain offset (phones differ by a few dB)
CAP_Q = 25.0  # squared innovation (in σ units) above which an anchor says no more: fades
NEIGHBOUR_M = 3.2  # cells this close are one step apart
STILL_S = 30.0  # mean time a shopper stands before walking on (prior; quick to follow a start)
WALK_S = 8.0  # mean time a shopper walks before stopping
STILL_HOP_S = 120.0  # standing: mean time before drifting to a neighbouring cell
WALK_HOP_S = 2.5  # walking (1 m/s over 2.5 m cells): mean time per cell
TURN_S = 10.0  # walking: mean time before a new direction
FAR_MOVE = 1e-4  # per second and state: a jump (a missed stretch of the walk)
MAX_DT_S = 30.0


class CellFilter:
    """Fixed arrays of the forward filter and its step; per-token state is ``post``."""

    def __init__(self, layout: StoreLayout) -> None:
        anchors = [layout.anchors[a] for a in layout.anchor_ids]
        cells = layout.cells
        ax = np.array([a.x for a in anchors])[:, None]
        ay = np.array([a.y for a in anchors])[:, None]
        n = np.array([a.exponent for a in anchors])[:, None]
        cx = np.array([c.x for c in cells])[None, :]
        cy = np.array([c.y for c in cells])[None, :]
        d = np.hypot(ax - cx, ay - cy)
        mean = -10.0 * n * np.log10(np.maximum(d, 0.5))  # (anchors, cells)
        toward = np.arctan2(ay - cy, ax - cx)  # direction from the cell to the anchor
        heads = np.arange(HEADINGS) * (2.0 * math.pi / HEADINGS)
        body = 0.5 * BODY_DB * (1.0 - np.cos(toward[:, :, None] - heads[None, None, :]))
        self.mean = mean[:, :, None] - body  # (anchors, cells, headings)
        self.cells = len(cells)
        self.cell_zone = np.array([c.zone for c in cells], dtype=np.intp)
        self.zones = len(layout.zone_ids)
        cd = np.hypot(cx.T - cx, cy.T - cy)
        near = ((cd > 0) & (cd <= NEIGHBOUR_M)).astype(float)
        near /= np.maximum(near.sum(axis=1, keepdims=True), 1.0)
        self.neighbours_t = np.ascontiguousarray(near.T)
        self._mean_flat = np.ascontiguousarray(self.mean.reshape(len(anchors), -1))
        onehot = np.zeros((self.cells, self.zones))
        onehot[np.arange(self.cells), self.cell_zone] = 1.0
        self._zone_of_state = np.repeat(onehot, HEADINGS, axis=0)  # (cells·headings, zones)
        self._hop = np.zeros((2, 1, 1))  # per-mode hop probability of the current step
        self._s2 = SHADOW_DB**2
        self._f2 = FAST_DB**2
        self._m2 = MODEL_DB**2
        self._decay = np.array([1.0 / TAU_S, 1.0 / TAU_S + WALK_MPS / DECOR_M])

    def initial(self) -> np.ndarray:
        """A flat prior: (modes, cells, headings) summing to one."""
        size = 2 * self.cells * HEADINGS
        return np.full((2, self.cells, HEADINGS), 1.0 / size)

    def predict(self, post: np.ndarray, dt: float) -> np.ndarray:
        """The state ``dt`` seconds later, before any evidence."""
        dt = min(max(dt, 0.0), MAX_DT_S)
        start = 1.0 - math.exp(-dt / STILL_S)  # standing → walking
        stop = 1.0 - math.exp(-dt / WALK_S)  # walking → standing
        turn = 1.0 - math.exp(-dt / TURN_S)
        self._hop[0, 0, 0] = 1.0 - math.exp(-dt / STILL_HOP_S)
        self._hop[1, 0, 0] = 1.0 - math.exp(-dt / WALK_HOP_S)
        stand, walk = post[0], post[1]
        # A new facing when a shopper stops at a shelf or walks on.
        stand_any = stand.sum(axis=1, keepdims=True) * (1.0 / HEADINGS)
        walk_any = walk.sum(axis=1, keepdims=True) * (1.0 / HEADINGS)
        mixed = np.empty_like(post)
        np.add((1.0 - start) * stand, stop * walk_any, out=mixed[0])
        # Walking on: a turn now and then (its facing forgotten); the hop is linear, so turning
        # before or after it is the same.
        np.add(((1.0 - stop) * (1.0 - turn)) * walk, (1.0 - stop) * turn * walk_any, out=mixed[1])
        mixed[1] += start * stand_any
        # Hops to neighbouring cells, at each mode's rate: mixed + hop·(N·mixed − mixed).
        out: np.ndarray = np.matmul(self.neighbours_t, mixed)
        out -= mixed
        out *= self._hop
        out += mixed
        out += FAR_MOVE * dt / out.size
        return out

    def update(
        self,
        pred: np.ndarray,
        anchors: np.ndarray,
        level: np.ndarray,
        count: np.ndarray,
        previous: np.ndarray,
        gap: np.ndarray,
        previous_var: np.ndarray,
    ) -> np.ndarray:
        """Posterior after the evidence of ``anchors`` (indices) heard since the last step.

        ``level``/``count``: mean level and packets per anchor since the last step;
        ``previous``/``gap``/``previous_var``: that anchor's level at its previous step, the
        seconds since (``inf`` when there is none) and its per-packet noise variance.
        """
        mu = self._mean_flat[anchors]  # (k, cells·headings)
        fast = self._f2 / count
        # Both modes at once: row 0 standing, row 1 walking (the shadowing also decorrelates
        # with the walker's movement).
        rho = np.exp(-np.outer(self._decay, gap))  # (2, k); 0 where there is no previous
        rho2 = rho * rho
        var = self._s2 * (1.0 - rho2) + (fast + self._m2) + rho2 * previous_var
        inv = 1.0 / var
        z = level - rho * np.where(np.isfinite(gap), previous, 0.0)
        b = 1.0 - rho
        # Residuals in units of their σ: r = (z − b·μ)/σ = z' − b'·μ.
        sd = np.sqrt(inv)
        zs = z * sd
        bs = b * sd
        r = bs[:, :, None] * mu  # (2, k, cells·headings)
        np.subtract(zs[:, :, None], r, out=r)
        q = r * r
        np.minimum(q, CAP_Q, out=q)
        ll = q.sum(axis=1)  # (2, cells·headings)
        if OFFSET_DB > 0.0:
            # A common gain offset of the phone, fitted per hypothesis (Gaussian prior):
            # Σ_k b_k·r_k/σ_k over the uncapped residuals.
            sb = (b * b * inv).sum(axis=1) + 1.0 / OFFSET_DB**2
            br = np.matmul(bs[:, None, :], r)[:, 0, :]
            ll -= br * br / sb[:, None]
        ll += np.log(var).sum(axis=1)[:, None]
        ll *= -0.5
        ll -= ll.max()
        np.exp(ll, out=ll)
        new: np.ndarray = pred * ll.reshape(pred.shape)
        total = float(new.sum())
        if not total > 0.0:
            return self.initial()
        new /= total
        return new

    def zone_post(self, post: np.ndarray) -> np.ndarray:
        """Probability of each zone (layout order)."""
        zp: np.ndarray = (post[0] + post[1]).reshape(-1) @ self._zone_of_state
        return zp
