"""The coupon model's feature contract: one versioned input vector for training and device.

Only the shopper's *context* is encoded: time, the coupon, where its product is relative to
the phone, how the visit is going, the consent tier and the site's weather. Nothing that
describes a person (age, gender, income, habits, identity) exists here, and
``tests/decide/test_features.py`` fails if such a feature is added. Changing names, order or
encoding means a new ``CONTRACT_VERSION``; the model card records the version it was trained
against and ``edge.decide.scorer`` refuses a model whose version differs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

CONTRACT_VERSION = "coupon-context/1"

CATEGORIES = ("coffee", "takeaway", "budget_food", "premium_food", "drinks")
VALIDITIES = ("2h", "1d")
WEATHERS = ("sunny", "rainy", "snowy")

# Local hour → daypart index; the training data has 7AM, 10AM, 2PM, 6PM and 10PM.
DAYPARTS = ("early_morning", "morning", "afternoon", "evening", "night")
_HOUR_TO_DAYPART = tuple(
    0 if 5 <= h < 9 else 1 if 9 <= h < 12 else 2 if 12 <= h < 16 else 3 if 16 <= h < 20 else 4
    for h in range(24)
)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Pace in zone changes per minute: below SLOW_PACE relaxed, at or above FAST_PACE hurried.
SLOW_PACE = 1.0
FAST_PACE = 3.0
# Temperature buckets in °C: below COLD_C cold, at or above WARM_C warm (data: -1, 13, 27 °C).
COLD_C = 6.0
WARM_C = 20.0
DWELL_CAP_S = 600.0
OFFERS_CAP = 3
MAX_TIER = 3

FEATURE_NAMES: tuple[str, ...] = (
    *(f"daypart_{d}" for d in DAYPARTS),
    *(f"weekday_{d}" for d in WEEKDAYS),
    *(f"category_{c}" for c in CATEGORIES),
    "category_other",
    "validity_2h",
    "distance_0",
    "distance_1",
    "distance_2plus",
    "heading_toward",
    "dwell_log",
    "pace_slow",
    "pace_medium",
    "pace_fast",
    "offers_this_visit",
    "tier",
    *(f"weather_{w}" for w in WEATHERS),
    "temp_cold",
    "temp_mild",
    "temp_warm",
)
N_FEATURES = len(FEATURE_NAMES)
_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
_DAYPART0 = _INDEX["daypart_early_morning"]
_WEEKDAY0 = _INDEX["weekday_mon"]
_CATEGORY0 = _INDEX["category_coffee"]
_CATEGORY_OTHER = _INDEX["category_other"]
_VALIDITY_2H = _INDEX["validity_2h"]
_DISTANCE0 = _INDEX["distance_0"]
_HEADING = _INDEX["heading_toward"]
_DWELL = _INDEX["dwell_log"]
_PACE0 = _INDEX["pace_slow"]
_OFFERS = _INDEX["offers_this_visit"]
_TIER = _INDEX["tier"]
_WEATHER0 = _INDEX["weather_sunny"]
_TEMP0 = _INDEX["temp_cold"]
_CATEGORY_INDEX = {c: i for i, c in enumerate(CATEGORIES)}
_WEATHER_INDEX = {w: i for i, w in enumerate(WEATHERS)}
_LOG_DWELL_CAP = math.log1p(DWELL_CAP_S)
_OTHER_SHARE = 1.0 / len(CATEGORIES)


@dataclass(frozen=True, slots=True)
class FeatureInput:
    """One (shopper context, candidate coupon) pair, before encoding."""

    hour: int  # local hour 0-23
    weekday: int  # 0 = Monday
    category: str  # campaign category; one of CATEGORIES, anything else encodes as "other"
    validity: str  # "2h" or "1d"
    zone_distance: int  # 0, 1, 2 (2 means 2+)
    heading_toward: bool
    dwell_s: float
    pace_per_min: float
    offers_this_visit: int
    tier: int  # consent tier 0-3
    weather: str = "sunny"  # sunny | rainy | snowy
    temperature_c: float = 20.0


def daypart(hour: int) -> int:
    """Daypart index (into DAYPARTS) of a local hour 0-23."""
    if not 0 <= hour <= 23:
        raise ValueError(f"hour must be 0-23, got {hour}")
    return _HOUR_TO_DAYPART[hour]


def _finite(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value}")
    return v


def encode_into(inp: FeatureInput, out: npt.NDArray[np.float32]) -> None:
    """Write the encoding of ``inp`` into a zeroed row ``out`` of length N_FEATURES."""
    out[_DAYPART0 + daypart(inp.hour)] = 1.0
    if not 0 <= inp.weekday <= 6:
        raise ValueError(f"weekday must be 0-6 (0 = Monday), got {inp.weekday}")
    out[_WEEKDAY0 + inp.weekday] = 1.0
    cat = _CATEGORY_INDEX.get(inp.category)
    if cat is None:
        out[_CATEGORY0 : _CATEGORY0 + len(CATEGORIES)] = _OTHER_SHARE
        out[_CATEGORY_OTHER] = 1.0
    else:
        out[_CATEGORY0 + cat] = 1.0
    if inp.validity not in VALIDITIES:
        raise ValueError(f"validity must be one of {VALIDITIES}, got {inp.validity!r}")
    out[_VALIDITY_2H] = 1.0 if inp.validity == "2h" else 0.0
    if inp.zone_distance < 0:
        raise ValueError(f"zone_distance must be >= 0, got {inp.zone_distance}")
    out[_DISTANCE0 + min(inp.zone_distance, 2)] = 1.0
    out[_HEADING] = 1.0 if inp.heading_toward else 0.0
    dwell = min(max(_finite("dwell_s", inp.dwell_s), 0.0), DWELL_CAP_S)
    out[_DWELL] = math.log1p(dwell) / _LOG_DWELL_CAP
    pace = max(_finite("pace_per_min", inp.pace_per_min), 0.0)
    out[_PACE0 + (0 if pace < SLOW_PACE else 1 if pace < FAST_PACE else 2)] = 1.0
    out[_OFFERS] = min(max(inp.offers_this_visit, 0), OFFERS_CAP) / OFFERS_CAP
    if not 0 <= inp.tier <= MAX_TIER:
        raise ValueError(f"tier must be 0-{MAX_TIER}, got {inp.tier}")
    out[_TIER] = inp.tier / MAX_TIER
    weather = _WEATHER_INDEX.get(inp.weather)
    if weather is None:
        raise ValueError(f"weather must be one of {WEATHERS}, got {inp.weather!r}")
    out[_WEATHER0 + weather] = 1.0
    temp = _finite("temperature_c", inp.temperature_c)
    out[_TEMP0 + (0 if temp < COLD_C else 1 if temp < WARM_C else 2)] = 1.0


def encode(inp: FeatureInput) -> npt.NDArray[np.float32]:
    """The contract vector of one input: float32, shape (N_FEATURES,)."""
    out = np.zeros(N_FEATURES, dtype=np.float32)
    encode_into(inp, out)
    return out


def encode_batch(rows: Sequence[FeatureInput]) -> npt.NDArray[np.float32]:
    """The contract vectors of many inputs: float32, shape (len(rows), N_FEATURES)."""
    out = np.zeros((len(rows), N_FEATURES), dtype=np.float32)
    for i, inp in enumerate(rows):
        encode_into(inp, out[i])
    return out
