"""The feature contract: exact list, no person features, encoding ranges and errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.decide import features as F

EXPECTED = (
    "daypart_early_morning",
    "daypart_morning",
    "daypart_afternoon",
    "daypart_evening",
    "daypart_night",
    "weekday_mon",
    "weekday_tue",
    "weekday_wed",
    "weekday_thu",
    "weekday_fri",
    "weekday_sat",
    "weekday_sun",
    "category_coffee",
    "category_takeaway",
    "category_budget_food",
    "category_premium_food",
    "category_drinks",
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
    "weather_sunny",
    "weather_rainy",
    "weather_snowy",
    "temp_cold",
    "temp_mild",
    "temp_warm",
)
INPUT_FIELDS = (
    "hour",
    "weekday",
    "category",
    "validity",
    "zone_distance",
    "heading_toward",
    "dwell_s",
    "pace_per_min",
    "offers_this_visit",
    "tier",
    "weather",
    "temperature_c",
)
# Words that would make the model about a person instead of a context (BRIEF §5: context
# features only, never demographics, habits or identity).
FORBIDDEN = {
    "gender", "sex", "age", "birth", "marital", "married", "children", "kids", "family",
    "education", "occupation", "job", "income", "salary", "wealth", "bar", "coffeehouse",
    "carryaway", "restaurant", "restaurantlessthan20", "restaurant20to50", "habit", "habits",
    "frequency", "passenger", "passanger", "companion", "ethnicity", "race", "religion",
    "health", "token", "device", "mac", "id", "uuid", "user", "name", "email", "phone",
    "address", "zip", "postcode", "home", "loyalty", "customer", "person", "identity",
    "history", "purchases", "face", "camera",
}  # fmt: skip


def _input(**kw: object) -> F.FeatureInput:
    base: dict[str, object] = {
        "hour": 10,
        "weekday": 0,
        "category": "coffee",
        "validity": "2h",
        "zone_distance": 0,
        "heading_toward": True,
        "dwell_s": 30.0,
        "pace_per_min": 2.0,
        "offers_this_visit": 0,
        "tier": 2,
    }
    base.update(kw)
    return F.FeatureInput(**base)  # type: ignore[arg-type]


def test_exact_feature_list() -> None:
    assert F.FEATURE_NAMES == EXPECTED
    assert F.N_FEATURES == len(EXPECTED) == 35
    assert F.CONTRACT_VERSION == "coupon-context/1"


def test_input_fields_are_context_only() -> None:
    assert tuple(f.name for f in dataclasses.fields(F.FeatureInput)) == INPUT_FIELDS


@pytest.mark.parametrize("name", [*EXPECTED, *INPUT_FIELDS])
def test_no_forbidden_feature(name: str) -> None:
    words = set(name.lower().split("_"))
    assert not words & FORBIDDEN, f"{name!r} looks like a person feature"


def test_forbidden_check_catches_demographics() -> None:
    for bad in ("age_bucket", "gender", "income_band", "coffeehouse_visits", "has_children"):
        assert set(bad.split("_")) & FORBIDDEN


def test_categories_match_campaign_contract() -> None:
    assert F.CATEGORIES == ("coffee", "takeaway", "budget_food", "premium_food", "drinks")


def test_encode_one_hot_groups() -> None:
    x = F.encode(_input(hour=14, weekday=5, category="drinks", zone_distance=7, weather="rainy"))
    assert x.dtype == np.float32 and x.shape == (F.N_FEATURES,)
    on = {n for n, v in zip(F.FEATURE_NAMES, x, strict=True) if v == 1.0}
    assert {
        "daypart_afternoon",
        "weekday_sat",
        "category_drinks",
        "validity_2h",
        "distance_2plus",
        "heading_toward",
        "pace_medium",
        "weather_rainy",
        "temp_warm",
    } <= on


@pytest.mark.parametrize(
    ("hour", "part"),
    [(7, "early_morning"), (10, "morning"), (14, "afternoon"), (18, "evening"), (22, "night"),
     (2, "night"), (5, "early_morning"), (12, "afternoon"), (20, "night")],
)  # fmt: skip
def test_dayparts(hour: int, part: str) -> None:
    assert F.DAYPARTS[F.daypart(hour)] == part


def test_unknown_category_is_other() -> None:
    x = F.encode(_input(category="snacks"))
    i = F.FEATURE_NAMES.index
    assert x[i("category_other")] == 1.0
    cats = x[i("category_coffee") : i("category_drinks") + 1]
    np.testing.assert_allclose(cats, 0.2)


def test_scalars_and_buckets() -> None:
    i = F.FEATURE_NAMES.index
    x = F.encode(_input(dwell_s=1e6, pace_per_min=0.2, offers_this_visit=9, tier=3))
    assert x[i("dwell_log")] == 1.0 and x[i("pace_slow")] == 1.0
    assert x[i("offers_this_visit")] == 1.0 and x[i("tier")] == 1.0
    x = F.encode(_input(dwell_s=-5, pace_per_min=3.0, temperature_c=-1.1, weather="snowy"))
    assert x[i("dwell_log")] == 0.0 and x[i("pace_fast")] == 1.0 and x[i("temp_cold")] == 1.0
    assert F.encode(_input(temperature_c=12.8))[i("temp_mild")] == 1.0


@pytest.mark.parametrize(
    "bad",
    [
        {"hour": 24},
        {"hour": -1},
        {"weekday": 7},
        {"validity": "3d"},
        {"zone_distance": -1},
        {"tier": 4},
        {"weather": "cloudy"},
        {"dwell_s": float("nan")},
        {"temperature_c": float("inf")},
    ],
)
def test_invalid_inputs_raise(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        F.encode(_input(**bad))


inputs = st.builds(
    F.FeatureInput,
    hour=st.integers(0, 23),
    weekday=st.integers(0, 6),
    category=st.sampled_from([*F.CATEGORIES, "snacks", ""]),
    validity=st.sampled_from(F.VALIDITIES),
    zone_distance=st.integers(0, 10),
    heading_toward=st.booleans(),
    dwell_s=st.floats(-10, 1e5),
    pace_per_min=st.floats(0, 100),
    offers_this_visit=st.integers(0, 20),
    tier=st.integers(0, 3),
    weather=st.sampled_from(F.WEATHERS),
    temperature_c=st.floats(-40, 50),
)


@given(inputs)
def test_encoding_in_unit_range(inp: F.FeatureInput) -> None:
    x = F.encode(inp)
    assert np.all((x >= 0) & (x <= 1))
    i = F.FEATURE_NAMES.index
    for group in ("daypart_", "weekday_", "distance_", "pace_", "weather_", "temp_"):
        assert sum(v for n, v in zip(F.FEATURE_NAMES, x, strict=True) if n.startswith(group)) == 1
    assert x[i("category_coffee") : i("category_drinks") + 1].sum() == pytest.approx(1.0)


def test_encode_batch_matches_encode() -> None:
    rows = [_input(hour=h, category=c) for h in (0, 9, 23) for c in (*F.CATEGORIES, "x")]
    batch = F.encode_batch(rows)
    assert batch.shape == (len(rows), F.N_FEATURES) and batch.dtype == np.float32
    for row, inp in zip(batch, rows, strict=True):
        np.testing.assert_array_equal(row, F.encode(inp))
    assert F.encode_batch([]).shape == (0, F.N_FEATURES)
