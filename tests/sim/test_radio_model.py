"""Simulator radio model: correlated shadowing (AR(1), body, fast fading, fades) and iid mode.

The statistical tests run the real ``Listeners``/``FixedLinks`` with a fixed seed and compare
sample statistics with what the module docstring documents. Tolerances are derived from the
sample size in a comment at each assertion (several standard errors, so a fixed seed passes
with room to spare, while a change of a documented parameter by ~20 % fails). Where a term
is measured on its own, the other terms are switched off through ``Shadowing``'s own
parameters, or two runs share the same seed (common random numbers) so that the difference
isolates one term exactly.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import pytest

from edge.config import AppConfig
from edge.events import Advertisement
from edge.sim import AppReport, StoreSimulator
from edge.sim.advertise import beacon_air
from edge.sim.radio_model import FixedLinks, Link, LinkState, Listeners, NoiseSource, Shadowing
from edge.sim.simulator import Item
from tests.helpers import demo_config

SIGMA = 6.0
TAU = 5.0  # shadowing_correlation_s default (config and Shadowing)
D_C = 3.0  # documented spatial decorrelation distance
FAST = 2.0  # documented fast-fading σ
BODY = 8.0  # documented body loss straight behind
FADE_P = 0.03
FADE_MEAN = 8.0
FADE_CAP = 25.0
OLD_BLOCK = 1 << 16  # NoiseSource block size before the correlated model (commit 56a4502)

# Listeners on the line x = 0, each equidistant from the two points (±0.25, 0) that a moving
# phone alternates between, so movement changes no path-loss mean, only the shadowing.
YS = (1.0, -1.0, 1.5, -1.5, 2.0, -2.0, 2.5, -2.5)
A1M = -40.0  # loud enough that no sample reaches FLOOR_DBM or the 0 dBm clamp


def _listeners(seed: int, sh: Shadowing | None, *, drop: float = 0.0) -> Listeners:
    links = [Link(0.0, y, A1M, 2.0) for y in YS]
    return Listeners(
        links,
        sigma_db=SIGMA if sh is None else sh.sigma_db,
        drop_rate=drop,
        max_range_m=1e6,
        noise=NoiseSource(np.random.default_rng(seed)),
        shadowing=sh,
    )


def _ar_only(**kw: float) -> Shadowing:
    """The AR(1) term alone: no fast fading, no fades (σ_c = σ)."""
    return Shadowing(sigma_db=SIGMA, fast_sigma_db=0.0, fade_probability=0.0, **kw)


def _series(
    lst: Listeners,
    steps: int,
    *,
    dt: float,
    step_m: float = 0.0,
    heading: float | None = None,
) -> np.ndarray:
    """RSSI (steps × listeners) of one phone heard every ``dt`` s, moving ``step_m`` a step.

    The phone alternates between (-step_m/2, 0) and (+step_m/2, 0): every step moves it
    ``step_m`` while its distance to each listener stays the same.
    """
    state = LinkState()
    out = np.empty((steps, len(lst)))
    for s in range(steps):
        x = step_m / 2 if s % 2 else -step_m / 2
        heard = lst.hear(x, 0.0, state=state, t=s * dt, heading=heading)
        assert [i for i, _ in heard] == list(range(len(lst)))  # nothing lost or clipped
        out[s] = [r for _, r in heard]
    return out


def _autocorr(x: np.ndarray, lag: int) -> float:
    """Sample autocorrelation at ``lag``, pooled over the independent columns."""
    c = x - x.mean(axis=0)
    return float((c[:-lag] * c[lag:]).mean() / (c * c).mean())


# -- the AR(1) shadowing ---------------------------------------------------------------------------


def test_shadowing_autocorrelation_in_time_is_exp_minus_lag_over_tau() -> None:
    # 8 independent pairs × 20 000 samples 1 s apart: N = 160 000. Bartlett's formula for an
    # AR(1) with φ = e^-0.2 gives SE(r_5) = √(3.0/N) ≈ 0.0044 and SE(r_50) ≈ √(5.1/N) ≈ 0.0056;
    # the tolerance 0.025 is > 4 SE, and τ off by 20 % moves r_5 by ≥ 0.06.
    x = _series(_listeners(1, _ar_only()), 20_000, dt=1.0)
    assert _autocorr(x, 1) == pytest.approx(math.exp(-1.0 / TAU), abs=0.025)
    assert _autocorr(x, 5) == pytest.approx(math.exp(-1.0), abs=0.025)  # lag = τ
    assert abs(_autocorr(x, 50)) < 0.025  # lag = 10 τ: decorrelated


def test_shadowing_is_nearly_constant_over_a_short_lag() -> None:
    # Lag 0.05 s: ρ = e^-0.01 ≈ 0.990. 8 × 4 000 samples (200 s = 40 τ per pair): the variance
    # estimated over 40 τ is ~1/40 low and noisy, which scales 1 - r_1 (≈ 0.01) by up to
    # ~±50 % (seen: errors ≤ 0.005 over 8 seeds); tolerance 0.01, while i.i.d. gives ≈ 0.
    x = _series(_listeners(2, _ar_only()), 4_000, dt=0.05)
    assert _autocorr(x, 1) == pytest.approx(math.exp(-0.05 / TAU), abs=0.01)


def test_correlation_time_follows_the_configured_tau() -> None:
    # τ = 2 s, samples 1 s apart, 8 × 10 000: r_2 ≈ e^-1 with SE ≈ √(2.4/80 000) ≈ 0.0055.
    x = _series(_listeners(3, _ar_only(correlation_s=2.0)), 10_000, dt=1.0)
    assert _autocorr(x, 2) == pytest.approx(math.exp(-1.0), abs=0.03)
    assert _autocorr(x, 5) == pytest.approx(math.exp(-2.5), abs=0.03)


def test_shadowing_decorrelates_over_about_3_m_of_the_phones_movement() -> None:
    # No time passes (dt = 0); the phone moves 0.5 m a step, so lag 6 = 3 m: ρ = e^-1.
    # 8 × 20 000 samples, φ = e^(-1/6): SE(r_6) ≈ √(3.0/160 000) ≈ 0.0043; tolerance 0.025.
    x = _series(_listeners(4, _ar_only()), 20_000, dt=0.0, step_m=0.5)
    assert _autocorr(x, 1) == pytest.approx(math.exp(-0.5 / D_C), abs=0.025)
    assert _autocorr(x, 6) == pytest.approx(math.exp(-1.0), abs=0.025)
    assert abs(_autocorr(x, 60)) < 0.025  # 30 m away: unrelated


def test_time_and_movement_decorrelate_together() -> None:
    # Walking at 1 m/s, heard every second: ρ = exp(-1/τ - 1/d_c) ≈ 0.587 (neither alone).
    x = _series(_listeners(5, _ar_only()), 20_000, dt=1.0, step_m=1.0)
    assert _autocorr(x, 1) == pytest.approx(math.exp(-1.0 / TAU - 1.0 / D_C), abs=0.025)


def test_a_still_phone_keeps_its_shadowing_while_no_time_passes() -> None:
    x = _series(_listeners(6, _ar_only()), 50, dt=0.0)
    assert np.all(x == x[0])  # ρ = 1: same pose, same instant, same shadowing
    assert len(set(x[0])) > 1  # but each pair has its own process


def test_fixed_links_shadowing_is_correlated_in_time_too() -> None:
    # Beacon → receiver links: AR(1) in time only. 8 receivers × 20 000 packets 1 s apart.
    sh = _ar_only()
    links = FixedLinks(
        [Link(0.0, 0.0, A1M, 2.0)],
        [(0.0, y, 0.0) for y in YS],
        sigma_db=SIGMA,
        drop_rate=0.0,
        max_range_m=1e6,
        noise=NoiseSource(np.random.default_rng(7)),
        shadowing=sh,
    )
    x = np.array([[r for _, r in links.hear(0, float(t))] for t in range(20_000)])
    assert x.shape == (20_000, len(YS))
    assert _autocorr(x, 5) == pytest.approx(math.exp(-1.0), abs=0.025)  # as in the time test
    assert abs(_autocorr(x, 50)) < 0.025


# -- spread, body, fast fading, fades --------------------------------------------------------------


@pytest.mark.parametrize("sigma", [4.0, 6.0, 8.0])
def test_total_spread_at_a_fixed_spot_is_the_configured_sigma(sigma: float) -> None:
    # σ covers the AR(1) part and the fast fading (docstring); fades are switched off here.
    # Samples τ apart (φ = e^-1), 8 × 5 000 = 40 000: SE(s)/σ ≈ √((1+φ²)/(1-φ²)/2N) ≈ 0.4 %,
    # so SE(s) ≤ 0.035 dB; tolerance 0.15 dB (> 4 SE). Using σ for the AR part alone would
    # give √(σ² + 4) (6.32 at σ = 6). The mean is the path-loss mean: SE ≈ σ·√(2.2/N) ≤ 0.06.
    sh = Shadowing(sigma_db=sigma, fade_probability=0.0)
    lst = _listeners(10 + int(sigma), sh)
    x = _series(lst, 5_000, dt=TAU)
    means = np.array([lst.mean_rssi(i, 0.0, 0.0) for i in range(len(lst))])
    dev = x - means
    rounding = 1.0 / 12.0  # variance added by reporting whole dBm
    assert float(np.sqrt((dev**2).mean() - rounding)) == pytest.approx(sigma, abs=0.15)
    assert float(dev.mean()) == pytest.approx(0.0, abs=0.25)


def test_fast_fading_differs_from_packet_to_packet() -> None:
    # Packets 1 ms apart: the shadowing has not moved (ρ ≈ 0.9998), so the packet-to-packet
    # variance is the fast fading's twice: 2·2² = 8 dB² (+ rounding). 8 × 5 000 samples:
    # SE ≈ 8·√(2/40 000) ≈ 0.06 dB²; tolerance 0.6 dB² (10 %).
    x = _series(_listeners(20, Shadowing(sigma_db=SIGMA, fade_probability=0.0)), 5_000, dt=0.001)
    d = np.diff(x, axis=0)
    assert float((d**2).mean()) == pytest.approx(2 * FAST**2 + 2 / 12, abs=0.6)


def _heading_pair(heading: float, body_loss: float = BODY) -> np.ndarray:
    """Per-packet RSSI difference: no body term minus ``heading`` (same seed, same draws)."""
    sh = Shadowing(sigma_db=SIGMA, body_loss_db=body_loss)
    ref = _series(_listeners(30, sh), 3_000, dt=0.5, heading=None)
    turned = _series(_listeners(30, sh), 3_000, dt=0.5, heading=heading)
    diff: np.ndarray = ref - turned
    return diff


@pytest.mark.parametrize(
    ("listener", "heading", "loss"),
    [
        (0, math.pi / 2, 0.0),  # listener 0 is at (0, +1): facing +y it is straight ahead
        (0, -math.pi / 2, BODY),  # facing -y it is straight behind: the full body loss
        (0, 0.0, BODY / 2),  # side on (θ ≈ 90°): half
        (1, -math.pi / 2, 0.0),  # listener 1 at (0, -1) is ahead when facing -y
        (1, math.pi / 2, BODY),
    ],
)
def test_body_shadowing_depends_on_which_way_the_shopper_faces(
    listener: int, heading: float, loss: float
) -> None:
    # The phone is at (0, 0) (no movement): the difference is exactly L·(1 - cos θ)/2 up to
    # rounding each packet to a whole dBm (|err| ≤ 1, mean ≈ 0 over 3 000 packets).
    diff = _heading_pair(heading)[:, listener]
    assert float(diff.mean()) == pytest.approx(loss, abs=0.1)
    assert np.all(np.abs(diff - loss) <= 1.0)


def test_body_loss_behind_follows_the_configured_amount() -> None:
    diff = _heading_pair(-math.pi / 2, body_loss=12.0)[:, 0]
    assert float(diff.mean()) == pytest.approx(12.0, abs=0.1)


def test_body_shadowing_lowers_the_mean_behind_by_the_body_loss() -> None:
    # Not paired: one phone facing +y hears listener 0 ahead and listener 1 behind, both at
    # 1 m. Over 40 000 packets 1 s apart the means differ by L; SE of each mean ≈
    # 6·√((1+φ)/(1-φ)/40 000) ≈ 0.09 dB (φ = e^-0.2), difference SE ≈ 0.13; tolerance 0.6.
    lst = Listeners(
        [Link(0.0, 1.0, A1M, 2.0), Link(0.0, -1.0, A1M, 2.0)],
        sigma_db=SIGMA,
        drop_rate=0.0,
        max_range_m=1e6,
        noise=NoiseSource(np.random.default_rng(31)),
        shadowing=Shadowing(sigma_db=SIGMA),
    )
    state = LinkState()
    rows = [lst.hear(0.0, 0.0, state=state, t=float(t), heading=math.pi / 2) for t in range(40_000)]
    ahead = np.mean([r[0][1] for r in rows])
    behind = np.mean([r[1][1] for r in rows])
    assert ahead - behind == pytest.approx(BODY, abs=0.6)


def test_multipath_fades_occur_at_the_documented_rate_and_depth() -> None:
    # Same seed with and without fades: the per-packet difference is the fade (up to
    # rounding). A fade of depth D changes the whole-dBm value with probability min(1, D), so
    # the share of changed packets is p·E[min(1, D)] = p·8·(1 - e^-1/8) ≈ 0.0282;
    # 8 × 25 000 = 200 000 packets: SE ≈ 0.00037, tolerance 0.002 (p = 0.02 or 0.04 fail).
    # The mean depth of a changed packet is E[D]/0.94 with E[D] = 8·(1 - e^-25/8) ≈ 7.65:
    # ≈ 8.14; ~5 600 fades with sd ≈ 7.3 give SE ≈ 0.1, tolerance 0.5. Depths are capped at
    # 25 dB, which ~4 % of fades reach.
    with_fades = _series(_listeners(40, Shadowing(sigma_db=SIGMA)), 25_000, dt=0.5)
    without = _series(
        _listeners(40, Shadowing(sigma_db=SIGMA, fade_probability=0.0)), 25_000, dt=0.5
    )
    depth = (without - with_fades).ravel()
    assert depth.min() >= 0  # a fade only ever takes signal away
    faded = depth[depth > 0]
    expected_share = FADE_P * FADE_MEAN * (1 - math.exp(-1 / FADE_MEAN))
    assert faded.size / depth.size == pytest.approx(expected_share, abs=0.002)
    mean_fade = FADE_MEAN * (1 - math.exp(-FADE_CAP / FADE_MEAN))
    assert float(faded.mean()) == pytest.approx(mean_fade / (expected_share / FADE_P), abs=0.5)
    assert depth.max() == FADE_CAP
    capped_share = float((faded == FADE_CAP).mean())
    assert 0.02 < capped_share < 0.07  # P(Exp(8) ≥ 25) ≈ 0.044


# -- iid mode: the stream from before the correlated model -----------------------------------------


def _old_draws(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` normals and uniforms as the pre-change ``NoiseSource`` drew them.

    Blocks of 2^16: a block of standard normals, then a block of uniforms, from one numpy
    ``default_rng(seed)``; each transmission consumes one of each per listener.
    """
    rng = np.random.default_rng(seed)
    zs: list[np.ndarray] = []
    us: list[np.ndarray] = []
    while sum(len(z) for z in zs) < n:
        zs.append(rng.standard_normal(OLD_BLOCK))
        us.append(rng.random(OLD_BLOCK))
    return np.concatenate(zs)[:n], np.concatenate(us)[:n]


def _old_rssi(mean: float, z: float, u: float, drop: float) -> int | None:
    """The i.i.d. model: ``round(mean + σ·z)``, lost if ``u < drop``, floor -100, clamp 0."""
    if u < drop or mean != mean:
        return None
    rssi = mean + SIGMA * z
    return None if rssi < -100 else min(round(rssi), 0)


def test_iid_listeners_reproduce_the_old_stream() -> None:
    # Five listeners, one out of range (40 m > 30 m); 15 000 transmissions × 5 = 75 000 draws
    # cross a block boundary. The phone's state, time and heading are ignored in iid mode.
    xs = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0), (10.0, 10.0), (40.0, 0.0)]
    links = [Link(x, y, -59.0 - i, 2.0 + 0.1 * i) for i, (x, y) in enumerate(xs)]
    drop = 0.15
    lst = Listeners(
        links,
        sigma_db=SIGMA,
        drop_rate=drop,
        max_range_m=30.0,
        noise=NoiseSource(np.random.default_rng(123)),
        shadowing=None,
    )
    state = LinkState()
    n, steps = len(links), 15_000
    zs, us = _old_draws(123, n * steps)
    got: list[list[tuple[int, int]]] = []
    want: list[list[tuple[int, int]]] = []
    for s in range(steps):
        px, py, extra = (s % 97) * 0.3, (s % 89) * 0.2, float(s % 5 - 2)
        got.append(lst.hear(px, py, extra, state=state, t=s * 0.5, heading=float(s)))
        row = []
        for i, ((lx, ly), lk) in enumerate(zip(xs, links, strict=True)):
            d = max(math.hypot(px - lx, py - ly), 0.3)
            mean = lk.rssi_at_1m + extra - 10 * lk.exponent * math.log10(d) if d <= 30 else math.nan
            r = _old_rssi(mean, zs[s * n + i], us[s * n + i], drop)
            if r is not None:
                row.append((i, r))
        want.append(row)
    assert got == want
    heard = sum(len(r) for r in got)
    assert 0.8 * 0.85 * (n - 1) * steps < heard < (n - 1) * steps  # loss happened, not all


def test_iid_fixed_links_reproduce_the_old_stream() -> None:
    tx = [Link(0.0, 0.0, -59.0, 2.2), Link(20.0, 0.0, -61.0, 2.0)]
    rx = [(1.0, 1.0, 0.0), (10.0, 0.0, 3.0), (35.0, 0.0, -2.0)]
    drop = 0.15
    links = FixedLinks(
        tx,
        rx,
        sigma_db=SIGMA,
        drop_rate=drop,
        max_range_m=30.0,
        noise=NoiseSource(np.random.default_rng(9)),
        shadowing=None,
    )
    steps, n = 30_000, len(rx)
    zs, us = _old_draws(9, steps * n)
    for s in range(steps):
        j = s % 2
        t = tx[j]
        got = links.hear(j, s * 0.1)
        want = []
        for i, (x, y, off) in enumerate(rx):
            d = math.hypot(t.x - x, t.y - y)
            mean = t.rssi_at_1m + off - 10 * t.exponent * math.log10(max(d, 0.3))
            r = _old_rssi(mean if d <= 30 else math.nan, zs[s * n + i], us[s * n + i], drop)
            if r is not None:
                want.append((i, r))
        assert got == want, s


# -- the simulator: the option, determinism, stepping ----------------------------------------------


def _config(mode: str) -> AppConfig:
    cfg = demo_config()
    return cfg.model_copy(
        update={"simulator": cfg.simulator.model_copy(update={"shadowing": mode})}
    )


def _items(mode: str, seed: int, seconds: float, step: float) -> list[Item]:
    sim = StoreSimulator(_config(mode), seed=seed)
    out: list[Item] = []
    end = sim.now + seconds
    t = sim.now
    while t < end:
        t = min(t + step, end)
        out.extend(sim.advance(t))
    return out


def _fingerprint(item: Item) -> tuple[object, ...]:
    if isinstance(item, AppReport):
        return ("app", item.ts, item.payload)
    return (item.address, item.receiver, item.ts, item.rssi)


@pytest.mark.parametrize("mode", ["correlated", "iid"])
def test_simulator_stream_is_deterministic_per_seed_however_it_is_stepped(mode: str) -> None:
    whole = [_fingerprint(i) for i in _items(mode, 3, 60.0, step=60.0)]  # one advance call
    small = [_fingerprint(i) for i in _items(mode, 3, 60.0, step=0.37)]  # many small ones
    other = [_fingerprint(i) for i in _items(mode, 4, 60.0, step=60.0)]
    assert len(whole) > 1_000
    assert whole == small
    assert whole != other


def _frame_key(md: Mapping[int, bytes], sd: Mapping[str, bytes]) -> str:
    return repr((sorted(md.items()), sorted(sd.items())))


@pytest.mark.parametrize(("mode", "low", "high"), [("correlated", 0.4, 0.9), ("iid", -0.1, 0.1)])
def test_the_shadowing_option_selects_the_model(mode: str, low: float, high: float) -> None:
    # Reference beacons are fixed, so a beacon-receiver pair's RSSI varies only by noise.
    # Packets ~1 s apart: correlated, lag-1 correlation ≈ σ_c²·e^-0.2 / (σ² + fades) ≈ 0.65;
    # iid ≈ 0 (minus ~1/50 from removing each pair's mean over ~50 packets).
    cfg = _config(mode)
    beacon_frames = {
        _frame_key(air.manufacturer_data, air.service_data)
        for air in (beacon_air(b, "") for b in cfg.store.beacons)
    }
    pairs: dict[tuple[str, str], list[int]] = defaultdict(list)
    for item in _items(mode, 8, 60.0, step=60.0):
        if (
            isinstance(item, Advertisement)
            and _frame_key(item.manufacturer_data, item.service_data) in beacon_frames
        ):
            pairs[(item.address, item.receiver)].append(item.rssi)
    num = den = 0.0
    for series in pairs.values():
        if len(series) >= 20:
            c = np.asarray(series, dtype=float) - np.mean(series)
            num += float((c[:-1] * c[1:]).sum())
            den += float((c * c).sum())
    assert den > 0
    assert low < num / den < high
