#!/usr/bin/env python3
"""Benchmark the committed coupon model: µs per inference, single and batch of 32.

Measures, in one run: each importable TFLite runtime (ai_edge_litert, tflite_runtime) on
pre-encoded rows (set_tensor + invoke + get_tensor) and end to end through
``CouponScorer`` (encode + inference), against a NumPy forward pass of the same weights read
from the .tflite. Prints a markdown table and replaces the section between
``<!-- model-bench:start -->`` and ``<!-- model-bench:end -->`` in docs/PERFORMANCE.md.

    python scripts/bench_model.py [--repeat 7] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.decide import features as F  # noqa: E402
from edge.decide.scorer import (  # noqa: E402
    BATCH,
    DEFAULT_MODEL,
    RUNTIME_ENV,
    RUNTIMES,
    CouponScorer,
    import_interpreter,
)
from edge.errors import ModelError  # noqa: E402
from scripts.training.numpy_forward import forward, read_dense_tflite  # noqa: E402

DOC = ROOT / "docs" / "PERFORMANCE.md"
START, END = "<!-- model-bench:start -->", "<!-- model-bench:end -->"
COMMAND = (
    "SHELFEDGE_TFLITE_VENV=/tmp/tflvenv scripts/test_tflite_runtime.sh && "
    "python scripts/bench_model.py --tflite-python /tmp/tflvenv/bin/python"
)


def per_call_us(fn: Callable[[], Any], repeat: int, min_time_s: float = 0.2) -> float:
    """Median over ``repeat`` timed loops of the µs one call takes."""
    for _ in range(200):
        fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t0 >= min_time_s / 5:
            break
        n *= 2
    loops = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        loops.append((time.perf_counter_ns() - t0) / n / 1000)
    return statistics.median(loops)


def sample_inputs(n: int) -> list[F.FeatureInput]:
    """Plausible device inputs."""
    rng = np.random.default_rng(0)
    cats = (*F.CATEGORIES, "snacks")
    return [
        F.FeatureInput(
            hour=int(rng.integers(7, 22)),
            weekday=int(rng.integers(0, 7)),
            category=str(cats[rng.integers(len(cats))]),
            validity=str(F.VALIDITIES[rng.integers(2)]),
            zone_distance=int(rng.integers(0, 3)),
            heading_toward=bool(rng.integers(2)),
            dwell_s=float(rng.uniform(10, 200)),
            pace_per_min=float(rng.uniform(0, 5)),
            offers_this_visit=int(rng.integers(0, 2)),
            tier=2,
            weather=str(F.WEATHERS[rng.integers(3)]),
            temperature_c=float(rng.uniform(-5, 30)),
        )
        for _ in range(n)
    ]


def bench_runtime(name: str, data: bytes, x1: Any, xb: Any, repeat: int) -> dict[str, float]:
    """Raw interpreter timings on pre-encoded rows, and CouponScorer end to end."""
    _, interpreter_cls = import_interpreter(name)
    single = interpreter_cls(model_content=data, num_threads=1)
    single.allocate_tensors()
    i1, o1 = single.get_input_details()[0]["index"], single.get_output_details()[0]["index"]
    batch = interpreter_cls(model_content=data, num_threads=1)
    batch.resize_tensor_input(batch.get_input_details()[0]["index"], [BATCH, F.N_FEATURES])
    batch.allocate_tensors()
    ib, ob = batch.get_input_details()[0]["index"], batch.get_output_details()[0]["index"]

    def run1() -> float:
        single.set_tensor(i1, x1)
        single.invoke()
        return float(single.get_tensor(o1)[0, 0])

    def runb() -> Any:
        batch.set_tensor(ib, xb)
        batch.invoke()
        return batch.get_tensor(ob)

    os.environ[RUNTIME_ENV] = name
    try:
        scorer = CouponScorer.load()
    finally:
        del os.environ[RUNTIME_ENV]
    rows = sample_inputs(BATCH)
    return {
        "invoke_single": per_call_us(run1, repeat),
        "invoke_batch": per_call_us(runb, repeat),
        "score_single": per_call_us(lambda: scorer.score(rows[0]), repeat),
        "score_batch": per_call_us(lambda: scorer.score_batch(rows), repeat),
    }


def in_venv(python: str, name: str, repeat: int) -> dict[str, Any]:
    """Run the runtime measurement with another interpreter (e.g. tflite_runtime's venv)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [python, str(Path(__file__).resolve()), "--runtime-only", name]
    res = subprocess.run(
        [*cmd, "--repeat", str(repeat)], env=env, capture_output=True, text=True, check=True
    )
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    ver = subprocess.run(
        [python, "-c", "import numpy, sys; print(sys.version.split()[0], numpy.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    out["versions"] = f"Python {ver[0]}, numpy {ver[1]}, tflite-runtime 2.14.0"
    return out


def machine() -> str:
    """One line describing this machine and software."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for pkg in ("numpy", "ai-edge-litert", "tflite-runtime"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{pkg} {importlib.metadata.version(pkg)}")
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()} "
        f"{platform.machine()}; Python {platform.python_version()}; {', '.join(versions)}"
    )


def table(results: dict[str, dict[str, float]]) -> str:
    """The markdown table."""
    lines = [
        "| runtime | measured | µs single | µs batch of 32 | µs per row in batch |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        if "invoke_single" in r:
            lines.append(
                f"| {name} | set_tensor + invoke + get_tensor (pre-encoded) | "
                f"{r['invoke_single']:.2f} | {r['invoke_batch']:.2f} | "
                f"{r['invoke_batch'] / BATCH:.3f} |"
            )
            lines.append(
                f"| {name} | `CouponScorer.score` / `score_batch` (encode + inference) | "
                f"{r['score_single']:.2f} | {r['score_batch']:.2f} | "
                f"{r['score_batch'] / BATCH:.3f} |"
            )
        else:
            lines.append(
                f"| {name} | {r['what_label']} | {r['single']:.2f} | {r['batch']:.2f} | "
                f"{r['batch'] / BATCH:.3f} |"
            )
    return "\n".join(lines)


def section(results: dict[str, Any], notes: list[str], size: int) -> str:
    """The PERFORMANCE.md section."""
    card_line = f"Model: `edge/decide/models/coupon.tflite` ({size} bytes, 35 → 32 ReLU → 1)."
    body = [
        START,
        "## Coupon model inference",
        "",
        f"Command: `{COMMAND}` (median of repeated timed loops, one thread, warm).",
        f"Machine: {machine()}.",
        f"Measured: {dt.date.today().isoformat()}. {card_line}",
        "",
        table(results),
        "",
        "Target: ≤ 20 µs per single inference. The NumPy row is the same float32 weights "
        "(read back from the .tflite) in `scripts.training.numpy_forward.forward`, measured in the "
        "same run. `score` includes encoding the `FeatureInput` (pure Python, most of the cost).",
        *([""] + [f"- {n}" for n in notes] if notes else []),
        END,
    ]
    return "\n".join(body)


def write_doc(text: str) -> None:
    """Replace (or append) the marked section of docs/PERFORMANCE.md."""
    old = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Performance\n"
    if START in old and END in old:
        head, rest = old.split(START, 1)
        _, tail = rest.split(END, 1)
        new = head + text + tail
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(new, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7, help="timed loops per measurement")
    ap.add_argument("--no-write", action="store_true", help="print only, leave the doc alone")
    ap.add_argument(
        "--tflite-python",
        help="python of a venv with tflite-runtime (see scripts/test_tflite_runtime.sh)",
    )
    ap.add_argument("--runtime-only", choices=RUNTIMES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    data = DEFAULT_MODEL.read_bytes()
    rows = sample_inputs(BATCH)
    xb = F.encode_batch(rows)
    x1 = xb[:1].copy()
    if args.runtime_only:  # child mode: one runtime, JSON on stdout
        print(json.dumps(bench_runtime(args.runtime_only, data, x1, xb, args.repeat)))
        return 0
    results: dict[str, Any] = {}
    notes = []
    for name in RUNTIMES:
        try:
            results[name] = bench_runtime(name, data, x1, xb, args.repeat)
        except ModelError as exc:
            if name == "tflite_runtime" and args.tflite_python:
                results[name] = in_venv(args.tflite_python, name, args.repeat)
                notes.append(
                    f"tflite_runtime measured in its own venv ({args.tflite_python}; "
                    f"{results[name].pop('versions')}), same machine, same run."
                )
            else:
                notes.append(f"{name}: not measured here ({exc})")
                continue
        print(f"{name}: {results[name]}", flush=True)
    layers = read_dense_tflite(data)
    results["NumPy (same weights)"] = {
        "what_label": "`forward` on pre-encoded float32 rows",
        "single": per_call_us(lambda: forward(layers, x1), args.repeat),
        "batch": per_call_us(lambda: forward(layers, xb), args.repeat),
    }
    results["encode only"] = {
        "what_label": "`features.encode` / `encode_batch` (no inference)",
        "single": per_call_us(lambda: F.encode(rows[0]), args.repeat),
        "batch": per_call_us(lambda: F.encode_batch(rows), args.repeat),
    }
    text = section(results, notes, len(data))
    print(text)
    if not args.no_write:
        write_doc(text)
        print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
