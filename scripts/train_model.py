#!/usr/bin/env python3
"""Train the on-device coupon model on the UCI in-vehicle coupon data (context columns only).

Protocol (docs/MODEL.md): rows are mapped onto the feature contract (edge.decide.features);
5-fold StratifiedGroupKFold(shuffle=True, random_state=0) grouped by respondent block
(consecutive rows with identical demographic and habit columns, 587 blocks) measures the
shipped procedure and, on the same folds, logistic regression and gradient boosting on the
same context features and gradient boosting on all columns (the price of privacy). The
shipped network is then trained on all rows and written as .tflite + model card, with
reference outputs for the parity test.

The network is a 32-unit ReLU MLP distilled from a teacher: the empirical acceptance rate of
each context configuration, shrunk towards a logistic regression over pairwise interactions
of the contract features. Training is full-batch L-BFGS from a seeded start, single-threaded.

    python scripts/train_model.py [--data CSV] [--out DIR] [--seed N]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy
import sklearn
from scipy.optimize import minimize
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import PolynomialFeatures
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.decide import features as F  # noqa: E402
from scripts.training.numpy_forward import DenseLayer, forward  # noqa: E402
from scripts.training.tflite_writer import dense_to_tflite  # noqa: E402

DEFAULT_DATA = ROOT / "scripts" / "data" / "coupon" / "in-vehicle-coupon-recommendation.csv"
DATA_SHA256 = "4f564b9b0c2e25eda09af03fec58f66fab0fc77f29bfc791eb5e50855948f784"
DEFAULT_OUT = ROOT / "edge" / "decide" / "models"
DEFAULT_REFERENCE = ROOT / "tests" / "decide" / "data" / "reference_outputs.json"
MODEL_NAME = "coupon"

CONTEXT_COLUMNS = [
    "destination",
    "passanger",
    "weather",
    "temperature",
    "time",
    "coupon",
    "expiration",
    "toCoupon_GEQ5min",
    "toCoupon_GEQ15min",
    "toCoupon_GEQ25min",
    "direction_same",
    "direction_opp",
]
# Read only to find respondent blocks and for the all-columns comparison; never model inputs.
PERSON_COLUMNS = [
    "gender",
    "age",
    "maritalStatus",
    "has_children",
    "education",
    "occupation",
    "income",
    "Bar",
    "CoffeeHouse",
    "CarryAway",
    "RestaurantLessThan20",
    "Restaurant20To50",
]
EXPECTED_BLOCKS = 587

# Data → contract (BRIEF §5).
HOUR = {"7AM": 7, "10AM": 10, "2PM": 14, "6PM": 18, "10PM": 22}
CATEGORY = {
    "Coffee House": "coffee",
    "Carry out & Take away": "takeaway",
    "Restaurant(<20)": "budget_food",
    "Restaurant(20-50)": "premium_food",
    "Bar": "drinks",
}
PACE_FROM_DESTINATION = {"No Urgent Place": 0.5, "Home": 2.0, "Work": 4.0}  # urgency → pace
# Contract features the data cannot inform: filled with constants, weights fixed at zero.
FILL_WEEKDAY, FILL_DWELL_S, FILL_OFFERS, FILL_TIER = 2, 30.0, 0, 2
UNTRAINED = (
    *(f"weekday_{d}" for d in F.WEEKDAYS),
    "dwell_log",
    "offers_this_visit",
    "tier",
)

PAIR_C = 0.1  # logistic regression over pairwise interactions (teacher prior)
SHRINK = 50.0  # pseudo-rows pulling a configuration's rate towards the prior
GRID_SHARE = 0.05  # weight of the synthetic grid relative to the data
HIDDEN = 32
L2 = 1e-5
MAX_ITER = 2000
N_REFERENCE_DATA, N_REFERENCE_RANDOM = 200, 100


def log(msg: str) -> None:
    """Progress line."""
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load(path: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The data frame, labels and respondent-block ids."""
    df = pd.read_csv(path)
    key = df[PERSON_COLUMNS].fillna("<NA>").astype(str).agg("|".join, axis=1)
    groups = (key != key.shift()).cumsum().to_numpy()
    n_blocks = len(np.unique(groups))
    assert n_blocks == EXPECTED_BLOCKS, f"expected {EXPECTED_BLOCKS} blocks, found {n_blocks}"
    return df, df["Y"].to_numpy(dtype=np.int64), groups


def to_inputs(df: pd.DataFrame) -> list[F.FeatureInput]:
    """Map each survey row onto the feature contract."""
    rows = []
    for r in df.itertuples(index=False):
        distance = 2 if r.toCoupon_GEQ25min else 1 if r.toCoupon_GEQ15min else 0
        rows.append(
            F.FeatureInput(
                hour=HOUR[r.time],
                weekday=FILL_WEEKDAY,
                category=CATEGORY[r.coupon],
                validity=r.expiration,
                zone_distance=distance,
                heading_toward=bool(r.direction_same),
                dwell_s=FILL_DWELL_S,
                pace_per_min=PACE_FROM_DESTINATION[r.destination],
                offers_this_visit=FILL_OFFERS,
                tier=FILL_TIER,
                weather=r.weather.lower(),
                temperature_c=round((r.temperature - 32) * 5 / 9, 1),
            )
        )
    return rows


def grid_inputs() -> tuple[list[F.FeatureInput], np.ndarray]:
    """Every combination of the trained features (incl. category "other"); known-category mask."""
    rows = []
    # Category varies fastest, so each run of len(CATEGORIES) + 1 rows shares everything else.
    for hour, val, dist, head, pace, weather, temp, cat in itertools.product(
        HOUR.values(),
        F.VALIDITIES,
        (0, 1, 2),
        (False, True),
        sorted(PACE_FROM_DESTINATION.values()),
        F.WEATHERS,
        (-1.1, 12.8, 26.7),
        (*F.CATEGORIES, "other"),
    ):
        rows.append(
            F.FeatureInput(
                hour=hour,
                weekday=FILL_WEEKDAY,
                category=cat,
                validity=val,
                zone_distance=dist,
                heading_toward=head,
                dwell_s=FILL_DWELL_S,
                pace_per_min=pace,
                offers_this_visit=FILL_OFFERS,
                tier=FILL_TIER,
                weather=weather,
                temperature_c=temp,
            )
        )
    known = np.array([r.category in F.CATEGORIES for r in rows])
    return rows, known


@dataclass
class Teacher:
    """Soft targets: configuration rates shrunk towards a pairwise logistic regression."""

    configs: np.ndarray  # unique trained-feature rows seen in training
    rates: np.ndarray
    counts: np.ndarray
    grid_rates: np.ndarray
    prior: LogisticRegression


def pairwise(x: np.ndarray) -> np.ndarray:
    """All pairwise products of the trained features, plus the features."""
    return PolynomialFeatures(2, interaction_only=True, include_bias=False).fit_transform(x)


def fit_teacher(x: np.ndarray, y: np.ndarray, grid: np.ndarray, known: np.ndarray) -> Teacher:
    """Fit the prior and the shrunk configuration table on training rows only."""
    prior = LogisticRegression(C=PAIR_C, max_iter=5000).fit(pairwise(x), y)
    configs, inv = np.unique(x, axis=0, return_inverse=True)
    inv = inv.ravel()
    counts = np.bincount(inv).astype(np.float64)
    positives = np.bincount(inv, weights=y)
    p_prior = prior.predict_proba(pairwise(configs))[:, 1]
    rates = (positives + SHRINK * p_prior) / (counts + SHRINK)
    g = prior.predict_proba(pairwise(grid))[:, 1]
    per_cat = len(F.CATEGORIES) + 1
    g = g.reshape(-1, per_cat, *g.shape[1:])
    block = known.reshape(-1, per_cat)
    assert block[:, :-1].all() and not block[:, -1].any()
    g[:, -1] = g[:, :-1].mean(axis=1)
    return Teacher(configs, rates, counts, g.ravel(), prior)


def train_student(x: np.ndarray, t: np.ndarray, w: np.ndarray, seed: int) -> list[DenseLayer]:
    """Weighted soft-label cross-entropy, 1 hidden ReLU layer, full-batch L-BFGS."""
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    w1 = rng.normal(0.0, 1.0 / np.sqrt(d), (HIDDEN, d))
    w2 = rng.normal(0.0, 1.0 / np.sqrt(HIDDEN), HIDDEN)
    theta0 = np.concatenate([w1.ravel(), np.zeros(HIDDEN), w2, [0.0]])
    ws = w / w.sum()

    def unpack(th: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        a = HIDDEN * d
        return (
            th[:a].reshape(HIDDEN, d),
            th[a : a + HIDDEN],
            th[a + HIDDEN : a + 2 * HIDDEN],
            float(th[-1]),
        )

    def loss(th: np.ndarray) -> tuple[float, np.ndarray]:
        w1, b1, w2, b2 = unpack(th)
        pre = x @ w1.T + b1
        h = np.maximum(pre, 0.0)
        z = h @ w2 + b2
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        val = float(np.sum(ws * (np.logaddexp(0.0, z) - t * z)))
        val += L2 * float(np.sum(w1 * w1) + np.sum(w2 * w2))
        g = ws * (p - t)
        gh = np.outer(g, w2) * (pre > 0)
        grad = np.concatenate(
            [
                (gh.T @ x + 2 * L2 * w1).ravel(),
                gh.sum(axis=0),
                h.T @ g + 2 * L2 * w2,
                [g.sum()],
            ]
        )
        return val, grad

    res = minimize(
        loss,
        theta0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": MAX_ITER, "gtol": 1e-10, "ftol": 1e-15},
    )
    w1, b1, w2, b2 = unpack(res.x)
    return [DenseLayer(w1, b1, "relu"), DenseLayer(w2[None, :], np.array([b2]))]


def fit_shipped_procedure(
    x: np.ndarray, y: np.ndarray, grid: np.ndarray, known: np.ndarray, seed: int
) -> tuple[list[DenseLayer], Teacher]:
    """Teacher then student on the given rows (trained features only)."""
    teacher = fit_teacher(x, y, grid, known)
    grid_w = GRID_SHARE * teacher.counts.sum() / len(grid)
    xs = np.vstack([teacher.configs, grid])
    ts = np.concatenate([teacher.rates, teacher.grid_rates])
    ws = np.concatenate([teacher.counts, np.full(len(grid), grid_w)])
    return train_student(xs, ts, ws, seed), teacher


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(y[m].mean() - p[m].mean())
    return total


def onehot(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """One-hot encoding of the given raw columns (missing values as their own level)."""
    return pd.get_dummies(df[cols].fillna("<NA>").astype(str)).to_numpy(np.float64)


def embed(layers: list[DenseLayer], trained: np.ndarray) -> list[DenseLayer]:
    """Widen the first layer to the full contract; untrained inputs get zero weights."""
    first = layers[0]
    w = np.zeros((first.weights.shape[0], F.N_FEATURES))
    w[:, trained] = first.weights
    return [DenseLayer(w, first.bias, first.activation), *layers[1:]]


def as_f32(layers: list[DenseLayer]) -> list[DenseLayer]:
    """The float32 weights that go into the .tflite."""
    return [
        DenseLayer(la.weights.astype(np.float32), la.bias.astype(np.float32), la.activation)
        for la in layers
    ]


def random_inputs(rng: np.random.Generator, n: int) -> list[F.FeatureInput]:
    """Inputs across the whole contract range (device-like, off the data's grid)."""
    cats = (*F.CATEGORIES, "snacks")
    return [
        F.FeatureInput(
            hour=int(rng.integers(0, 24)),
            weekday=int(rng.integers(0, 7)),
            category=str(cats[rng.integers(len(cats))]),
            validity=str(F.VALIDITIES[rng.integers(2)]),
            zone_distance=int(rng.integers(0, 4)),
            heading_toward=bool(rng.integers(2)),
            dwell_s=float(np.round(rng.uniform(0, 900), 1)),
            pace_per_min=float(np.round(rng.uniform(0, 6), 2)),
            offers_this_visit=int(rng.integers(0, 5)),
            tier=int(rng.integers(0, 4)),
            weather=str(F.WEATHERS[rng.integers(3)]),
            temperature_c=float(np.round(rng.uniform(-10, 35), 1)),
        )
        for _ in range(n)
    ]


def cross_validate(
    df: pd.DataFrame, x_full: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int
) -> dict[str, Any]:
    """Grouped 5-fold CV of the shipped procedure and the comparisons, same folds."""
    trained = np.array([n not in UNTRAINED for n in F.FEATURE_NAMES])
    x = x_full[:, trained]
    grid_rows, known = grid_inputs()
    grid = F.encode_batch(grid_rows).astype(np.float64)[:, trained]
    folds = list(StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0).split(x, y, groups))
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te]), "respondent in train and test"
    person_free = onehot(df, CONTEXT_COLUMNS)
    everything = onehot(df, [c for c in df.columns if c != "Y"])
    models: dict[str, tuple[str, Any]] = {
        "logistic_regression_context": (
            "LogisticRegression (sklearn defaults) on the contract encoding",
            lambda: LogisticRegression(max_iter=2000),
        ),
        "gradient_boosting_context": (
            "HistGradientBoostingClassifier (defaults) on the contract encoding",
            lambda: HistGradientBoostingClassifier(random_state=0),
        ),
        "gradient_boosting_all_columns": (
            "HistGradientBoostingClassifier on all columns incl. demographics and habits",
            lambda: HistGradientBoostingClassifier(random_state=0),
        ),
        "logistic_regression_raw_context_columns": (
            "LogisticRegression on one-hot raw context columns (incl. passenger; README figure)",
            lambda: LogisticRegression(max_iter=2000),
        ),
        "gradient_boosting_raw_context_columns": (
            "HistGradientBoostingClassifier on one-hot raw context columns (README figure)",
            lambda: HistGradientBoostingClassifier(random_state=0),
        ),
    }
    inputs = {
        "logistic_regression_context": x,
        "gradient_boosting_context": x,
        "gradient_boosting_all_columns": everything,
        "logistic_regression_raw_context_columns": person_free,
        "gradient_boosting_raw_context_columns": person_free,
    }
    aucs: dict[str, list[float]] = {k: [] for k in [*models, "pairwise_prior", "teacher"]}
    student_aucs: list[float] = []
    oof = np.zeros(len(y))
    for k, (tr, te) in enumerate(folds):
        layers, teacher = fit_shipped_procedure(x[tr], y[tr], grid, known, seed)
        oof[te] = forward(layers, x[te])[:, 0]
        student_aucs.append(float(roc_auc_score(y[te], oof[te])))
        p_prior = teacher.prior.predict_proba(pairwise(x[te]))[:, 1]
        aucs["pairwise_prior"].append(float(roc_auc_score(y[te], p_prior)))
        lookup = {c.tobytes(): r for c, r in zip(teacher.configs, teacher.rates, strict=True)}
        p_teacher = np.array(
            [lookup.get(r.tobytes(), p) for r, p in zip(x[te], p_prior, strict=True)]
        )
        aucs["teacher"].append(float(roc_auc_score(y[te], p_teacher)))
        for name, (_, make) in models.items():
            m = make().fit(inputs[name][tr], y[tr])
            aucs[name].append(float(roc_auc_score(y[te], m.predict_proba(inputs[name][te])[:, 1])))
        log(
            f"fold {k + 1}/5: shipped {student_aucs[-1]:.4f}, teacher {aucs['teacher'][-1]:.4f}, "
            f"GB context {aucs['gradient_boosting_context'][-1]:.4f}, "
            f"GB all columns {aucs['gradient_boosting_all_columns'][-1]:.4f}"
        )
    descriptions = {name: desc for name, (desc, _) in models.items()}
    descriptions["pairwise_prior"] = (
        f"LogisticRegression(C={PAIR_C}) on pairwise interactions of the contract encoding "
        "(teacher prior)"
    )
    descriptions["teacher"] = "configuration rates shrunk to the pairwise prior (teacher)"
    return {
        "folds": student_aucs,
        "oof": oof,
        "comparisons": [
            {
                "name": name,
                "auc": round(float(np.mean(v)), 4),
                "auc_folds": [round(a, 4) for a in v],
                "description": descriptions[name],
            }
            for name, v in aucs.items()
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="coupon CSV")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model + card directory")
    ap.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="parity outputs")
    ap.add_argument("--seed", type=int, default=0, help="student initialisation seed")
    ap.add_argument("--model-version", default="1.0.0")
    args = ap.parse_args(argv)
    with threadpool_limits(limits=1):  # single-threaded BLAS/OpenMP: reproducible float sums
        return train(args)


def train(args: argparse.Namespace) -> int:
    """Cross-validate, train on all rows, write model, card and reference outputs."""
    t0 = time.perf_counter()

    raw = args.data.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != DATA_SHA256:
        log(f"warning: {args.data} is not the vendored data set (sha256 {digest[:16]}…)")
    df, y, groups = load(args.data)
    log(f"{len(df)} rows, {len(np.unique(groups))} respondent blocks, {args.data}")
    x_full = F.encode_batch(to_inputs(df)).astype(np.float64)
    trained = np.array([n not in UNTRAINED for n in F.FEATURE_NAMES])
    assert np.ptp(x_full[:, ~trained], axis=0).max() == 0, "untrained feature varies in data"

    cv = cross_validate(df, x_full, y, groups, args.seed)
    folds, oof = cv["folds"], cv["oof"]
    log(f"grouped CV AUC {np.mean(folds):.4f} (min {min(folds):.4f}, max {max(folds):.4f})")

    grid_rows, known = grid_inputs()
    grid = F.encode_batch(grid_rows).astype(np.float64)[:, trained]
    layers64, _ = fit_shipped_procedure(x_full[:, trained], y, grid, known, args.seed)
    full64 = embed(layers64, trained)
    layers32 = as_f32(full64)
    description = f"ShelfEdge coupon model {args.model_version}, contract {F.CONTRACT_VERSION}"
    model = dense_to_tflite(layers32, description)
    sha = hashlib.sha256(model).hexdigest()
    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / f"{MODEL_NAME}.tflite"
    model_path.write_bytes(model)
    log(f"wrote {model_path} ({len(model)} bytes, sha256 {sha[:16]}…)")

    rng = np.random.default_rng(args.seed)
    canary_in = F.encode_batch(random_inputs(rng, 8))
    canary_out = forward(full64, canary_in.astype(np.float64))[:, 0]
    card = {
        "model_version": args.model_version,
        "contract_version": F.CONTRACT_VERSION,
        "sha256": sha,
        "size_bytes": len(model),
        "training_data_sha256": hashlib.sha256(raw).hexdigest(),
        "training_rows": len(df),
        "respondent_blocks": len(np.unique(groups)),
        "grouped_cv_auc_mean": round(float(np.mean(folds)), 4),
        "grouped_cv_auc_min": round(float(np.min(folds)), 4),
        "grouped_cv_auc_max": round(float(np.max(folds)), 4),
        "grouped_cv_auc_folds": [round(a, 4) for a in folds],
        "accuracy": round(float(np.mean((oof >= 0.5) == y)), 4),
        "expected_calibration_error": round(ece(y, oof), 4),
        "log_loss": round(float(log_loss(y, oof)), 4),
        "cv_protocol": "StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0) by "
        "respondent block; accuracy (threshold 0.5) and ECE (10 bins) on out-of-fold scores",
        "comparisons": cv["comparisons"],
        "architecture": f"dense {int(trained.sum())} trained of {F.N_FEATURES} inputs → "
        f"{HIDDEN} ReLU → 1 → logistic",
        "input_name": "features",
        "input_dtype": "float32",
        "input_shape": [1, F.N_FEATURES],
        "output_name": "probability",
        "output_dtype": "float32",
        "output_shape": [1, 1],
        "feature_names": list(F.FEATURE_NAMES),
        "inputs_without_training_signal": list(UNTRAINED),
        "training": {
            "seed": args.seed,
            "teacher": f"configuration rate shrunk ({SHRINK:g} pseudo-rows) to pairwise "
            f"LogisticRegression(C={PAIR_C})",
            "student": f"MLP {HIDDEN} ReLU, soft-label cross-entropy, L2 {L2:g}, L-BFGS-B "
            f"max {MAX_ITER} iterations; synthetic grid weight {GRID_SHARE:g}",
            "fills": {
                "weekday": FILL_WEEKDAY,
                "dwell_s": FILL_DWELL_S,
                "offers_this_visit": FILL_OFFERS,
                "tier": FILL_TIER,
                "pace_per_min_from_destination": PACE_FROM_DESTINATION,
            },
            "versions": {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "scikit-learn": sklearn.__version__,
                "pandas": pd.__version__,
            },
        },
        "canaries": {
            "inputs": [[float(v) for v in row] for row in canary_in],
            "outputs": [round(float(p), 7) for p in canary_out],
            "tolerance": 1e-4,
        },
        "data": "UCI in-vehicle coupon recommendation (id 603), CC BY 4.0, Wang et al., "
        "JMLR 18(70), 2017",
    }
    card_path = args.out / f"{MODEL_NAME}.card.json"
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    log(f"wrote {card_path}")

    pick = rng.choice(len(df), N_REFERENCE_DATA, replace=False)
    ref_x = np.vstack(
        [x_full[np.sort(pick)], F.encode_batch(random_inputs(rng, N_REFERENCE_RANDOM))]
    )
    ref = {
        "model_sha256": sha,
        "source": "NumPy float64 forward pass of the trained weights (scripts/train_model.py)",
        "feature_names": list(F.FEATURE_NAMES),
        "inputs": [[float(v) for v in row] for row in ref_x.astype(np.float32)],
        "outputs": [
            float(p) for p in forward(full64, ref_x.astype(np.float32).astype(np.float64))[:, 0]
        ],
    }
    args.reference.parent.mkdir(parents=True, exist_ok=True)
    args.reference.write_text(json.dumps(ref) + "\n")
    log(f"wrote {args.reference} ({len(ref_x)} rows)")
    for c in card["comparisons"]:
        log(f"  {c['name']:42s} AUC {c['auc']:.4f}")
    log(
        f"shipped: AUC {card['grouped_cv_auc_mean']:.4f}, accuracy {card['accuracy']:.4f}, "
        f"ECE {card['expected_calibration_error']:.4f}; {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
