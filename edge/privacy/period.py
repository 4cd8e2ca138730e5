"""The period release: footfall summed over ``privacy.period_days`` days, ε reserved day by day.

One day's footfall at ε ≤ 1 per person per day is noise-dominated (one person is up to N = 74
tokens × 4 visits; docs/PRIVACY.md), so the device also sums the day's exact footfall over a
period of D days (``privacy.period_days``, default 7; periods are aligned to the calendar:
day ordinals ``(ordinal - 1) // D``, Monday-to-Sunday weeks for D = 7) and publishes the sum
once, with the noise of one day (``release: period``, edge/contract/aggregate.py).

ε accounting, per person per day. Statistic ``s`` takes the share ``share_s`` of each day's
ε_day. Its noise scale is fixed for the period: ``b_s = N_day·cap_s / (share_s·ε_day)``, with
``N_day`` the token bound of the full counting hours. When the period starts counting day ``d``
(its first event in the counting hours from ``start_d`` on), it claims in the ε ledger, under
that day, ``ε_d = Σ_s share_s·ε_day·N(L_d) / N_day`` with ``L_d = close_d − start_d`` (the most
it can count that day). One person's contribution from day ``d`` to ``s`` is at most
``N(L_d)·cap_s`` (the per-token bookkeeping is per day, as in the day release), so what day
``d`` reveals about that person through the period release costs at most
``N(L_d)·cap_s / b_s`` summed over ``s`` = ``ε_d``: exactly what the ledger recorded for day
``d``. The ledger refuses any claim that would take the day's total, over every release, past
ε_day, so one person loses at most ε_day per day whatever days they are present; a person
present on all D days loses D·ε_day over the period, as D day releases would cost. A day whose
claim is refused (budget spent, or already claimed by an earlier run) is not counted.

The exact sums live only in this process's RAM. A stop publishes the period so far
(``partial``), spending nothing more (its days were reserved when they began); the restarted
device counts from the next day on (the day of the stop was claimed already), so a restart
loses the rest of that day for the period and splits the period into two noisier releases.
Ledger slots of period days are ``+(open_d + 1)`` (windows use their start, a multiple of
``window_s``; day segments minus their start); a collision could only refuse a claim.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from edge.config.models import AppConfig
from edge.events import AggregateWindow, PresenceEvent
from edge.privacy.budget import PrivacyFigures
from edge.privacy.daily import (
    DEFAULT_DESIGN,
    STORE_WIDE,
    DayAggregator,
    DayDesign,
    NoiseFactory,
)
from edge.privacy.holders import Holding
from edge.privacy.ledger import EpsilonLedger
from edge.privacy.noise import DiscreteLaplace

PERIOD_STATS: tuple[str, ...] = ("footfall", "arrivals")  # what a period release can sum
PERIOD_DESIGN = DayDesign(shares={"footfall": Fraction(7, 10)}, caps=DEFAULT_DESIGN.caps)


def day_design_beside(period: DayDesign, day: DayDesign = DEFAULT_DESIGN) -> DayDesign:
    """The day release's design when ``period`` takes its statistics' shares of each day.

    The day release spends what the ledger leaves of the day, so its shares are rescaled to
    sum to what they summed to: each remaining statistic keeps its absolute ε per day.
    """
    moved = set(period.published())
    rest = {s: v for s, v in day.shares.items() if s not in moved}
    total_rest = sum(rest.values(), Fraction(0))
    if total_rest == 0:
        raise ValueError("the period release leaves the day release no statistic")
    scale = sum(day.shares.values(), Fraction(0)) / total_rest
    return DayDesign(shares={s: v * scale for s, v in rest.items()}, caps=day.caps)


@dataclass(frozen=True, slots=True)
class CountedDay:
    """A day of the period: its date, when counting began and ended, its token bound and ε."""

    day: str
    start: float
    end: float
    tokens: int  # N(L_d): tokens one person can show that day (L_d = close_d − start_d)
    epsilon: Fraction  # what the ledger recorded for the period on that day


class PeriodAggregator(DayAggregator):
    """Counts each day's counting hours as the day release does and sums them over a period."""

    holder_name = "privacy.period"

    def __init__(
        self,
        cfg: AppConfig,
        *,
        design: DayDesign = PERIOD_DESIGN,
        noise: NoiseFactory = DiscreteLaplace,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        ledger: EpsilonLedger,
        monotonic: Callable[[], float] = time.monotonic,
        started: float | None = None,
    ) -> None:
        unknown = set(design.published()) - set(PERIOD_STATS)
        if unknown:
            raise ValueError(f"a period release cannot sum {sorted(unknown)}")
        super().__init__(
            cfg, design=design, noise=noise, new_id=new_id, ledger=ledger,
            monotonic=monotonic, started=started,
        )  # fmt: skip
        self.days = cfg.privacy.period_days
        if self.days < 2:
            raise ValueError("a period release needs privacy.period_days >= 2")
        self._pid: int | None = None  # the period being summed
        self._acc: dict[str, dict[str, dict[str, int]]] = {}
        self._counted: list[CountedDay] = []
        self._refused: str | None = None  # the day whose claim was refused (not counted)
        self._pending: list[AggregateWindow] = []

    # -- ε per day ---------------------------------------------------------------------------

    def day_epsilon(self, counting_s: float) -> Fraction:
        """ε reserved for a day on which at most ``counting_s`` seconds can be counted."""
        b = self.budget
        full = sum(b.design.shares.values(), Fraction(0)) * b.epsilon_per_day
        return full * b.tokens(counting_s) / b.tokens_per_day

    @property
    def epsilon_per_full_day(self) -> Fraction:
        """ε the period release takes of a day counted from opening to close."""
        return self.day_epsilon(self.budget.period_s)

    def period_noise_scale(self, stat: str) -> Fraction:
        """b_s = N_day·cap_s / (share_s·ε_day), fixed for the period."""
        b = self.budget
        return b.noise_scale(stat, b.period_s, b.epsilon_per_day)

    # -- periods -----------------------------------------------------------------------------

    def period_of(self, day: str) -> int:
        """The calendar period a site-local date belongs to."""
        return (dt.date.fromisoformat(day).toordinal() - 1) // self.days

    def period_days_of(self, pid: int) -> tuple[dt.date, dt.date]:
        """First and last date of a period."""
        first = dt.date.fromordinal(pid * self.days + 1)
        return first, first + dt.timedelta(days=self.days - 1)

    def _period_close(self, pid: int) -> float:
        return self._at(self.period_days_of(pid)[1], self.budget.close_h)

    def _counting(self, ts: float) -> bool:
        """Open the day (claiming its ε) when ``ts`` is in counting hours; True when it counts."""
        if self._seg is None:
            day, open_ts, close_ts = self._period(ts)
            start = max(open_ts, self._started)
            if not start <= ts < close_ts or day == self._refused:
                return False
            pid = self.period_of(day)
            if self._pid is not None and pid != self._pid:
                self._finish(partial=False)
            eps = self.day_epsilon(close_ts - start)
            if not self.ledger.claim(int(open_ts) + 1, day, epsilon=eps):
                self._refused = day
                return False
            self._pid = pid
            tokens = self.budget.tokens(close_ts - start)
            self._counted.append(CountedDay(day, start, close_ts, tokens, eps))
            self._seg = (day, start, close_ts)
            self._opened_mono = self._mono() - (ts - start)
        _, start, close_ts = self._seg
        return start <= ts < close_ts

    def touch(self, ts: float) -> None:
        """Open the day at ``ts`` if it is in counting hours (claims the day's reservation)."""
        self._counting(ts)

    # -- publication -------------------------------------------------------------------------

    def due(self, now: float) -> bool:
        """A finished period waits, the open day has ended, or the period has ended."""
        if self._pending or super().due(now):
            return True
        return self._seg is None and self._pid is not None and now >= self._period_close(self._pid)

    def close(self, now: float, *, partial: bool = False) -> AggregateWindow | None:
        """Fold the ended day into the sums; publish the period when it has ended (or at a stop).

        Returns one finished period at a time (None when there is none).
        """
        if self._seg is not None and (partial or super().due(now)):
            self._fold(now, partial)
        ended = self._pid is not None and (partial or now >= self._period_close(self._pid))
        if ended and self._seg is None:
            self._finish(partial=partial)
        return self._pending.pop(0) if self._pending else None

    def close_all(self, now: float) -> list[AggregateWindow]:
        """At a stop: the period so far (partial) and any finished period not yet returned."""
        first = self.close(now, partial=True)
        out, self._pending = self._pending, []
        return out if first is None else [first, *out]

    def _fold(self, now: float, partial: bool) -> None:
        if self._seg is None:
            return
        _, start, close_ts = self._seg
        end = min(max(now, start), close_ts) if partial else close_ts
        last = self._counted[-1]
        self._counted[-1] = CountedDay(last.day, last.start, end, last.tokens, last.epsilon)
        for stat, zones in self._raw().items():
            acc = self._acc.setdefault(stat, {})
            for zone, keyed in zones.items():
                row = acc.setdefault(zone, {})
                for key, n in keyed.items():
                    row[key] = row.get(key, 0) + n
        self._counts = self._empty()
        self._tok.clear()
        self._salt = secrets.token_bytes(32)
        self._seg = None  # (``_opened_mono`` is read only while a segment is open)
        if partial:
            self._started = max(self._started, now)  # never count this stretch again

    def _raw(self) -> dict[str, dict[str, dict[str, int]]]:
        c = self._counts
        raw = {
            "footfall": {z: {"visitors": n} for z, n in c.footfall.items()},
            "arrivals": {STORE_WIDE: {f"{h:02d}": n for h, n in c.arrivals.items()}},
        }
        return {s: raw[s] for s in self.budget.design.published()}

    def _finish(self, *, partial: bool) -> None:
        """Noise, suppress and queue the summed period; start a new one."""
        if self._pid is None:  # (a period id is set together with its first counted day)
            return
        payload = self._payload(self._pid, partial)
        self._pid, self._acc, self._counted = None, {}, []
        self.windows_closed += 1
        self._pending.append(
            AggregateWindow(
                payload["id"], self._site, self._device,
                payload["period_start"], payload["period_end"], payload,
            )
        )  # fmt: skip

    def _payload(self, pid: int, partial: bool) -> dict[str, Any]:
        b = self.budget
        counted = self._counted
        tokens = sum(d.tokens for d in counted)
        stats: dict[str, Any] = {}
        total = suppressed = 0
        for stat in b.design.published():
            share = b.design.shares[stat]
            scale = self.period_noise_scale(stat)
            noise = self._noise(scale)
            values: dict[str, dict[str, int | None]] = {}
            for zone, keyed in sorted(self._acc[stat].items()):  # every day folds every stat
                row: dict[str, int | None] = {}
                for key, value in keyed.items():
                    noisy = value + noise.sample()
                    total += 1
                    if noisy < b.k:
                        suppressed += 1
                        row[key] = None
                    else:
                        row[key] = noisy
                values[zone] = row
            eps = share * b.epsilon_per_day * Fraction(tokens, b.tokens_per_day)
            stats[stat] = {
                "epsilon": round(float(eps), 9),
                "epsilon_per_day": round(float(share * b.epsilon_per_day), 9),
                "sensitivity": tokens * b.caps[stat],
                "noise_scale": round(float(scale), 6),
                "values": values,
            }
        self.cells_suppressed_total += suppressed
        first, last = self.period_days_of(pid)
        return {
            "release": "period",
            "id": self._new_id(),
            "site": self._site,
            "device": self._device,
            "first_day": first.isoformat(),
            "last_day": last.isoformat(),
            "days": [d.day for d in counted],
            "period_start": int(counted[0].start),
            "period_end": int(counted[-1].end),
            "partial": partial,
            "stats": stats,
            "cells": total,
            "cells_suppressed": suppressed,
            "privacy": {
                "k": b.k,
                "epsilon": round(float(sum(d.epsilon for d in counted)), 9),
                "epsilon_per_day": round(float(self.epsilon_per_full_day), 9),
                "noise": "discrete_laplace",
                "tokens_per_person": tokens,
                "tokens_per_person_per_day": b.tokens_per_day,
            },
        }


class DayAndPeriod(DayAggregator):
    """The day release with the period release beside it: one aggregator, one raw holder.

    The day release keeps every statistic the period does not take, at the same ε per day
    (``day_design_beside``); it spends what the ledger leaves of each day after the period's
    reservation, so the two never pass ε_day together.
    """

    def __init__(
        self,
        cfg: AppConfig,
        *,
        period_design: DayDesign = PERIOD_DESIGN,
        noise: NoiseFactory = DiscreteLaplace,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        ledger: EpsilonLedger,
        monotonic: Callable[[], float] = time.monotonic,
        started: float | None = None,
    ) -> None:
        super().__init__(
            cfg, design=day_design_beside(period_design), noise=noise, new_id=new_id,
            ledger=ledger, monotonic=monotonic, started=started,
        )  # fmt: skip
        self.period = PeriodAggregator(
            cfg, design=period_design, noise=noise, new_id=new_id, ledger=ledger,
            monotonic=monotonic, started=started,
        )  # fmt: skip

    # The app's counters cover both releases (the day release's own are kept beside).
    @property
    def windows_closed(self) -> int:
        """Messages published, both releases."""
        return self._day_closed + self.period.windows_closed

    @windows_closed.setter
    def windows_closed(self, value: int) -> None:
        self._day_closed = value

    @property
    def windows_withheld(self) -> int:
        """Messages withheld (the ledger refused their ε), day release."""
        return self._day_withheld

    @windows_withheld.setter
    def windows_withheld(self, value: int) -> None:
        self._day_withheld = value

    @property
    def cells_suppressed_total(self) -> int:
        """Cells below k, both releases."""
        return self._day_suppressed + self.period.cells_suppressed_total

    @cells_suppressed_total.setter
    def cells_suppressed_total(self, value: int) -> None:
        self._day_suppressed = value

    def privacy_figures(self, now: float) -> PrivacyFigures:
        """As the day release's, with ``epsilon_per_window`` the ε of a full day release beside
        the period (ε_day less the period's share); spent and remaining cover both releases."""
        figures = super().privacy_figures(now)
        day_eps = self.budget.epsilon_per_day - self.period.epsilon_per_full_day
        return dataclasses.replace(figures, epsilon_per_window=float(day_eps))

    def presence(self, ev: PresenceEvent) -> None:
        """Count for the period (which claims the day's reservation first) and the day."""
        self.period.presence(ev)
        super().presence(ev)

    def offer(self, token: bytes, coupon_id: str, ts: float) -> None:
        """Count an offer (day release only)."""
        self.period.touch(ts)
        super().offer(token, coupon_id, ts)

    def holdout(self, token: bytes, ts: float) -> None:
        """Count a holdout token (day release only)."""
        self.period.touch(ts)
        super().holdout(token, ts)

    def forget(self, token: bytes) -> int:
        """Drop the token's bookkeeping in both releases."""
        return self.period.forget(token) + super().forget(token)

    def purge(self, mono_now: float) -> None:
        """Drop bookkeeping older than one token lifetime in both releases."""
        self.period.purge(mono_now)
        super().purge(mono_now)

    def held(self, mono_now: float) -> Holding:
        """Both releases' bookkeeping entries and the oldest's age."""
        a, b = super().held(mono_now), self.period.held(mono_now)
        return Holding(a.records + b.records, max(a.oldest_age_s, b.oldest_age_s), a.limit_s)

    def contributions_held(self) -> int:
        """Tokens with bookkeeping right now, over both releases (introspection)."""
        return super().contributions_held() + self.period.contributions_held()

    def due(self, now: float) -> bool:
        """The day release or the period release has something to publish."""
        return super().due(now) or self.period.due(now)

    def close(self, now: float, *, partial: bool = False) -> AggregateWindow | None:
        """The day segment if it is due, else the period's next message (one at a time)."""
        if super().due(now) or (partial and self._seg is not None):
            return super().close(now, partial=partial)
        return self.period.close(now, partial=partial)

    def close_all(self, now: float) -> list[AggregateWindow]:
        """At a stop: the day segment so far and the period so far (each if published)."""
        day = super().close(now, partial=True)
        return ([] if day is None else [day]) + self.period.close_all(now)
