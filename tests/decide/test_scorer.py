"""The committed model under the installed runtime: parity, verification, clear errors.

Runs under ``ai_edge_litert`` by default; ``scripts/test_tflite_runtime.sh`` runs it again in
its own venv with ``SHELFEDGE_TFLITE_RUNTIME=tflite_runtime`` (tests that need the LiteRT
schema to write models are skipped there).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.decide import features as F
from edge.decide.scorer import (
    DEFAULT_MODEL,
    RUNTIME_ENV,
    RUNTIMES,
    CouponScorer,
    card_path_for,
    import_interpreter,
)
from edge.errors import ModelError

REFERENCE = Path(__file__).parent / "data" / "reference_outputs.json"
CARD = card_path_for(DEFAULT_MODEL)
HAS_SCHEMA = importlib.util.find_spec("ai_edge_litert") is not None
needs_schema = pytest.mark.skipif(not HAS_SCHEMA, reason="LiteRT schema (ai_edge_litert) absent")


@pytest.fixture(scope="module")
def scorer() -> CouponScorer:
    return CouponScorer.load()


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_text())
    return data


def _card() -> dict[str, Any]:
    card: dict[str, Any] = json.loads(CARD.read_text())
    return card


def _variant(tmp_path: Path, data: bytes | None = None, **card: Any) -> tuple[Path, Path]:
    """A model/card pair in tmp_path; the card's hash follows the data unless given."""
    data = DEFAULT_MODEL.read_bytes() if data is None else data
    model_path = tmp_path / "m.tflite"
    model_path.write_bytes(data)
    c = _card()
    c["sha256"] = hashlib.sha256(data).hexdigest()
    c.update(card)
    card_path = tmp_path / "m.card.json"
    card_path.write_text(json.dumps(c))
    return model_path, card_path


def _input(**kw: Any) -> F.FeatureInput:
    base: dict[str, Any] = {
        "hour": 8,
        "weekday": 1,
        "category": "coffee",
        "validity": "2h",
        "zone_distance": 0,
        "heading_toward": True,
        "dwell_s": 40.0,
        "pace_per_min": 0.5,
        "offers_this_visit": 0,
        "tier": 2,
    }
    base.update(kw)
    return F.FeatureInput(**base)


# --- parity and behaviour of the committed model ------------------------------------------


def test_runtime_and_identity(scorer: CouponScorer) -> None:
    assert scorer.runtime in RUNTIMES
    forced = os.environ.get(RUNTIME_ENV)
    if forced:
        assert scorer.runtime == forced
    card = _card()
    assert scorer.model_id == f"coupon-{card['model_version']}+{card['sha256'][:12]}"


def test_reference_belongs_to_committed_model(reference: dict[str, Any]) -> None:
    assert reference["model_sha256"] == hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
    assert reference["feature_names"] == list(F.FEATURE_NAMES)
    assert len(reference["inputs"]) >= 200


def test_parity_batched(scorer: CouponScorer, reference: dict[str, Any]) -> None:
    x = np.asarray(reference["inputs"], dtype=np.float32)
    got = np.asarray(scorer.score_encoded(x))
    np.testing.assert_allclose(got, reference["outputs"], rtol=0, atol=1e-5)


def test_parity_single(scorer: CouponScorer, reference: dict[str, Any]) -> None:
    x = np.asarray(reference["inputs"], dtype=np.float32)
    got = [scorer.score_encoded(row[None])[0] for row in x[::3]]
    np.testing.assert_allclose(got, reference["outputs"][::3], rtol=0, atol=1e-5)


@needs_schema
def test_numpy_forward_of_tflite_weights(reference: dict[str, Any]) -> None:
    from scripts.training.numpy_forward import forward, read_dense_tflite

    layers = read_dense_tflite(DEFAULT_MODEL.read_bytes())
    x = np.asarray(reference["inputs"], dtype=np.float64)
    wide = [type(la)(la.weights.astype(np.float64), la.bias.astype(np.float64), la.activation)
            for la in layers]  # fmt: skip
    np.testing.assert_allclose(forward(wide, x)[:, 0], reference["outputs"], atol=1e-5)


def test_card_claims() -> None:
    card = _card()
    assert card["contract_version"] == F.CONTRACT_VERSION
    assert card["sha256"] == hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
    assert DEFAULT_MODEL.stat().st_size <= 64 * 1024
    assert card["grouped_cv_auc_mean"] >= 0.72
    assert card["grouped_cv_auc_min"] <= card["grouped_cv_auc_mean"] <= card["grouped_cv_auc_max"]
    names = {c["name"] for c in card["comparisons"]}
    assert {
        "logistic_regression_context",
        "gradient_boosting_context",
        "gradient_boosting_all_columns",
    } <= names
    for key in ("training_data_sha256", "accuracy", "expected_calibration_error", "model_version"):
        assert key in card


def test_score_matches_batch(scorer: CouponScorer) -> None:
    rows = [_input(category=c, hour=h) for c in (*F.CATEGORIES, "snacks") for h in range(0, 24, 2)]
    assert len(rows) > 32  # crosses a batch boundary
    batch = scorer.score_batch(rows)
    single = [scorer.score(r) for r in rows]
    np.testing.assert_allclose(batch, single, atol=1e-6)
    assert scorer.score_batch([]) == []
    assert scorer.score_batch(rows[:1]) == single[:1]


def test_inputs_without_training_signal_do_not_move_the_score(scorer: CouponScorer) -> None:
    assert set(_card()["inputs_without_training_signal"]) == {
        *(f"weekday_{d}" for d in F.WEEKDAYS),
        "dwell_log",
        "offers_this_visit",
        "tier",
    }
    base = scorer.score(_input())
    for change in ({"weekday": 6}, {"dwell_s": 500.0}, {"offers_this_visit": 2}, {"tier": 3}):
        assert scorer.score(_input(**change)) == pytest.approx(base, abs=1e-7)


def test_context_moves_the_score(scorer: CouponScorer) -> None:
    def mean(**kw: Any) -> float:
        rows = [
            _input(category=c, hour=h, heading_toward=head, **kw)
            for c in F.CATEGORIES
            for h in (7, 10, 14, 18, 22)
            for head in (False, True)
        ]
        return float(np.mean(scorer.score_batch(rows)))

    # The data: a coupon 25+ minutes away is accepted less often than one nearby.
    assert mean(zone_distance=0) > mean(zone_distance=2) + 0.05


inputs = st.builds(
    F.FeatureInput,
    hour=st.integers(0, 23),
    weekday=st.integers(0, 6),
    category=st.sampled_from([*F.CATEGORIES, "snacks"]),
    validity=st.sampled_from(F.VALIDITIES),
    zone_distance=st.integers(0, 5),
    heading_toward=st.booleans(),
    dwell_s=st.floats(0, 3600),
    pace_per_min=st.floats(0, 30),
    offers_this_visit=st.integers(0, 10),
    tier=st.integers(0, 3),
    weather=st.sampled_from(F.WEATHERS),
    temperature_c=st.floats(-30, 45),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(inp=inputs)
def test_scores_are_probabilities(scorer: CouponScorer, inp: F.FeatureInput) -> None:
    p = scorer.score(inp)
    assert 0.0 <= p <= 1.0


# --- refusals ------------------------------------------------------------------------------


def test_hash_mismatch_in_card(tmp_path: Path) -> None:
    model, card = _variant(tmp_path, sha256="0" * 64)
    with pytest.raises(ModelError, match="SHA-256 mismatch") as err:
        CouponScorer.load(model, card)
    assert str(model) in str(err.value) and str(card) in str(err.value)


def test_modified_model_refused(tmp_path: Path) -> None:
    data = bytearray(DEFAULT_MODEL.read_bytes())
    data[-100] ^= 0x01
    model, card = _variant(tmp_path, bytes(data), sha256=_card()["sha256"])
    with pytest.raises(ModelError, match="SHA-256 mismatch"):
        CouponScorer.load(model, card)


def test_contract_version_mismatch(tmp_path: Path) -> None:
    model, card = _variant(tmp_path, contract_version="coupon-context/0")
    with pytest.raises(ModelError, match=r"contract version mismatch.*coupon-context/0"):
        CouponScorer.load(model, card)


def test_feature_names_mismatch(tmp_path: Path) -> None:
    model, card = _variant(tmp_path, feature_names=list(reversed(F.FEATURE_NAMES)))
    with pytest.raises(ModelError, match="feature names"):
        CouponScorer.load(model, card)


@pytest.mark.parametrize(
    ("key", "value"), [("input_shape", [1, 34]), ("output_shape", [1, 2])]
)  # fmt: skip
def test_card_shape_mismatch(tmp_path: Path, key: str, value: list[int]) -> None:
    model, card = _variant(tmp_path, **{key: value})
    what = key.split("_")[0]
    with pytest.raises(ModelError, match=f"{what} shape mismatch: card"):
        CouponScorer.load(model, card)


@needs_schema
@pytest.mark.parametrize(("n_in", "n_out", "what"), [(34, 1, "input"), (35, 2, "output")])
def test_model_shape_mismatch(tmp_path: Path, n_in: int, n_out: int, what: str) -> None:
    from scripts.training.numpy_forward import DenseLayer
    from scripts.training.tflite_writer import dense_to_tflite

    rng = np.random.default_rng(0)
    layers = [
        DenseLayer(rng.normal(size=(4, n_in)).astype(np.float32), np.zeros(4, np.float32), "relu"),
        DenseLayer(rng.normal(size=(n_out, 4)).astype(np.float32), np.zeros(n_out, np.float32)),
    ]
    model, card = _variant(tmp_path, dense_to_tflite(layers), canaries=None)
    with pytest.raises(ModelError, match=f"{what} shape mismatch: model .*m.tflite"):
        CouponScorer.load(model, card)


@pytest.mark.parametrize("keep", [0, 4, 7, 8, 64, 1000, 3000, 5999])
def test_truncated_model(tmp_path: Path, keep: int) -> None:
    data = DEFAULT_MODEL.read_bytes()[:keep]
    model, card = _variant(tmp_path, data)  # a card that matches the truncated bytes
    with pytest.raises(ModelError, match=r"m\.tflite") as err:
        CouponScorer.load(model, card)
    assert re.search(r"not a (valid )?TFLite (flatbuffer|model)", str(err.value))
    model, card = _variant(tmp_path, data, sha256=_card()["sha256"])  # the original card
    with pytest.raises(ModelError):
        CouponScorer.load(model, card)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is not a model at all " * 10,
        b'{"json": "instead of a flatbuffer"}',
        b"\x10\x00\x00\x00TFL3" + bytes(range(256)) * 4,  # right identifier, garbage body
    ],
)
def test_non_flatbuffer(tmp_path: Path, data: bytes) -> None:
    model, card = _variant(tmp_path, data)
    with pytest.raises(ModelError, match=r"m\.tflite"):
        CouponScorer.load(model, card)


def test_truncated_model_in_subprocess_does_not_crash(tmp_path: Path) -> None:
    """Every prefix of the model is refused with ModelError (a crash would kill the child)."""
    data = DEFAULT_MODEL.read_bytes()
    code = f"""
import hashlib, json, sys
from pathlib import Path
from edge.decide.scorer import CouponScorer
from edge.errors import ModelError
data = Path({str(DEFAULT_MODEL)!r}).read_bytes()
card = json.loads(Path({str(CARD)!r}).read_text())
tmp = Path({str(tmp_path)!r})
for n in range(0, len(data), 13):
    (tmp / "t.tflite").write_bytes(data[:n])
    card["sha256"] = hashlib.sha256(data[:n]).hexdigest()
    (tmp / "t.card.json").write_text(json.dumps(card))
    try:
        CouponScorer.load(tmp / "t.tflite")
    except ModelError:
        continue
    sys.exit(f"prefix {{n}} accepted")
print("refused all")
"""
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "refused all" in res.stdout
    assert len(data) > 13


def test_every_prefix_fails_the_structure_check() -> None:
    from edge.decide.tflite_check import FlatbufferError, check_tflite

    data = DEFAULT_MODEL.read_bytes()
    check_tflite(data)
    for n in range(len(data)):
        with pytest.raises(FlatbufferError):
            check_tflite(data[:n])


def test_corrupt_models_in_subprocess_do_not_crash(tmp_path: Path) -> None:
    """Random byte flips with a re-signed card: refused or loaded, never a crash."""
    code = f"""
import hashlib, json, random
from pathlib import Path
from edge.decide.scorer import CouponScorer
from edge.errors import ModelError
data = Path({str(DEFAULT_MODEL)!r}).read_bytes()
card = json.loads(Path({str(CARD)!r}).read_text())
tmp = Path({str(tmp_path)!r})
rng = random.Random(0)
refused = 0
for _ in range(40):
    d = bytearray(data)
    for _ in range(3):
        d[rng.randrange(len(d))] = rng.randrange(256)
    (tmp / "c.tflite").write_bytes(bytes(d))
    card["sha256"] = hashlib.sha256(bytes(d)).hexdigest()
    (tmp / "c.card.json").write_text(json.dumps(card))
    try:
        s = CouponScorer.load(tmp / "c.tflite")
        s.score_encoded(s.card["canaries"]["inputs"])
    except ModelError:
        refused += 1
print("done", refused)
"""
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "done" in res.stdout


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"cannot read model .*nope\.tflite"):
        CouponScorer.load(tmp_path / "nope.tflite")
    model, card = _variant(tmp_path)
    card.unlink()
    with pytest.raises(ModelError, match=r"cannot read model card .*m\.card\.json"):
        CouponScorer.load(model)


def test_bad_cards(tmp_path: Path) -> None:
    model, card = _variant(tmp_path)
    card.write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        CouponScorer.load(model, card)
    card.write_text("[]")
    with pytest.raises(ModelError, match="JSON object"):
        CouponScorer.load(model, card)
    c = _card()
    del c["contract_version"]
    card.write_text(json.dumps(c))
    with pytest.raises(ModelError, match="lacks contract_version"):
        CouponScorer.load(model, card)


def test_canary_mismatch(tmp_path: Path) -> None:
    canaries = _card()["canaries"]
    canaries["outputs"][0] = 1.0 - canaries["outputs"][0]
    model, card = _variant(tmp_path, canaries=canaries)
    with pytest.raises(ModelError, match="canary 0 mismatch"):
        CouponScorer.load(model, card)


def test_forced_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNTIME_ENV, "tensorflow")
    with pytest.raises(ModelError, match=RUNTIME_ENV):
        CouponScorer.load()
    want = "ai_edge_litert" if HAS_SCHEMA else "tflite_runtime"
    monkeypatch.setenv(RUNTIME_ENV, want)
    assert import_interpreter()[0] == want


def test_import_is_lazy() -> None:
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys, edge, edge.decide, edge.decide.scorer\n"
        "bad = [m for m in ('ai_edge_litert', 'tflite_runtime') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "import edge, edge.decide\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    res = subprocess.run(
        [sys.executable, "-c", "import sys, edge.decide; assert 'numpy' not in sys.modules"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
