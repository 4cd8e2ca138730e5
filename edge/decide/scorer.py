"""The on-device coupon scorer: a verified .tflite behind ``score`` / ``score_batch``.

``CouponScorer.load`` reads the model and its card, checks the file is a TFLite flatbuffer,
its SHA-256 equals the card's, the card's contract version and feature names equal
``edge.decide.features``, the tensors have the contract's shapes and dtype and the card's
canary inputs give the card's outputs; any failure is a ``ModelError`` naming the check and
the file. The runtime is ``ai_edge_litert`` or, failing that, ``tflite_runtime`` (force one
with ``SHELFEDGE_TFLITE_RUNTIME``), imported only inside ``load``.

Calls are synchronous and NOT thread-safe: the daemon calls them from its single model worker
thread (``DecisionEngine``'s executor), never from the event loop or two threads at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.decide.features import (
    CONTRACT_VERSION,
    FEATURE_NAMES,
    N_FEATURES,
    FeatureInput,
    encode_into,
)
from edge.decide.tflite_check import IDENTIFIER, FlatbufferError, check_tflite
from edge.errors import ModelError

_LOGGER = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS_DIR / "coupon.tflite"
RUNTIME_ENV = "SHELFEDGE_TFLITE_RUNTIME"
RUNTIMES = ("ai_edge_litert", "tflite_runtime")
BATCH = 32
INPUT_SHAPE = [1, N_FEATURES]
OUTPUT_SHAPE = [1, 1]
CARD_KEYS = (
    "model_version",
    "contract_version",
    "sha256",
    "feature_names",
    "input_shape",
    "output_shape",
)


def card_path_for(model_path: Path) -> Path:
    """The card beside a model: ``coupon.tflite`` → ``coupon.card.json``."""
    return model_path.with_name(model_path.name.removesuffix(".tflite") + ".card.json")


def import_interpreter(forced: str | None = None) -> tuple[str, Any]:
    """(runtime name, Interpreter class): the forced runtime, else the first importable."""
    forced = forced if forced is not None else os.environ.get(RUNTIME_ENV) or None
    if forced is not None and forced not in RUNTIMES:
        raise ModelError(f"{RUNTIME_ENV}={forced!r}: expected one of {', '.join(RUNTIMES)}")
    errors = []
    for name in (forced,) if forced else RUNTIMES:
        try:
            if name == "ai_edge_litert":
                from ai_edge_litert.interpreter import Interpreter
            else:
                from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        return name, Interpreter
    raise ModelError(
        "no TFLite runtime importable (" + "; ".join(errors) + "); install ai-edge-litert, "
        "or the 'tflite' extra (tflite-runtime, Python <= 3.11, NumPy < 2)"
    )


def read_card(card_path: Path) -> dict[str, Any]:
    """The model card as a dict with the required keys (ModelError otherwise)."""
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read model card {card_path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model card {card_path} is not valid JSON: {exc}") from exc
    if not isinstance(card, dict):
        raise ModelError(f"model card {card_path} must be a JSON object")
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise ModelError(f"model card {card_path} lacks {', '.join(missing)}")
    return card


def verify_card(data: bytes, model_path: Path, card: dict[str, Any], card_path: Path) -> None:
    """Flatbuffer identifier, SHA-256, contract version, feature names and shapes."""
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise ModelError(
            f"{model_path} is not a TFLite flatbuffer ({len(data)} bytes, "
            "file identifier TFL3 missing)"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != card["sha256"]:
        raise ModelError(
            f"SHA-256 mismatch: {model_path} is {digest}, card {card_path} says "
            f"{card['sha256']}; refusing a model that does not match its card"
        )
    if card["contract_version"] != CONTRACT_VERSION:
        raise ModelError(
            f"contract version mismatch: card {card_path} says {card['contract_version']!r}, "
            f"this code implements {CONTRACT_VERSION!r}"
        )
    if list(card["feature_names"]) != list(FEATURE_NAMES):
        raise ModelError(f"feature names in card {card_path} differ from the contract's")
    for key, want in (("input_shape", INPUT_SHAPE), ("output_shape", OUTPUT_SHAPE)):
        if list(card[key]) != want:
            raise ModelError(
                f"{key.replace('_', ' ')} mismatch: card {card_path} says {card[key]}, "
                f"the contract needs {want}"
            )


def _check_tensors(interp: Any, model_path: Path, rows: int) -> tuple[int, int]:
    """Input/output tensor indices after checking count, shape and dtype."""
    ins, outs = interp.get_input_details(), interp.get_output_details()
    if len(ins) != 1 or len(outs) != 1:
        raise ModelError(
            f"{model_path}: expected 1 input and 1 output tensor, found {len(ins)} and {len(outs)}"
        )
    for what, det, want in (
        ("input", ins[0], [rows, N_FEATURES]),
        ("output", outs[0], [rows, 1]),
    ):
        shape = [int(d) for d in det["shape"]]
        if shape != want:
            raise ModelError(
                f"{what} shape mismatch: model {model_path} has {shape}, the contract needs {want}"
            )
        if det["dtype"] != np.float32:
            raise ModelError(
                f"{what} dtype mismatch: model {model_path} has {np.dtype(det['dtype']).name}, "
                "the contract needs float32"
            )
    return int(ins[0]["index"]), int(outs[0]["index"])


_PROBE = """
import sys
from tflite_runtime.interpreter import Interpreter
try:
    data = sys.stdin.buffer.read()
    for rows in (1, int(sys.argv[1])):
        it = Interpreter(model_content=data, num_threads=1)
        it.allocate_tensors()
        if rows != 1:
            shape = list(it.get_input_details()[0]["shape"])
            it.resize_tensor_input(it.get_input_details()[0]["index"], [rows, *shape[1:]])
            it.allocate_tensors()
        it.invoke()
except Exception as exc:
    sys.stderr.write(f"{type(exc).__name__}: {exc}")
    sys.exit(3)
"""


def probe_in_child(data: bytes, model_path: Path, timeout_s: float = 60.0) -> None:
    """Load and run the model in a child process first, so a runtime crash cannot kill us.

    tflite_runtime 2.14 builds the interpreter without verifying the flatbuffer, and a
    truncated or corrupt file can crash the process (ai_edge_litert verifies, so it is not
    probed).
    """
    if not sys.executable:
        _LOGGER.warning("cannot probe %s in a child process: no sys.executable", model_path)
        return
    try:
        res = subprocess.run(
            [sys.executable, "-c", _PROBE, str(BATCH)],
            input=data,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"tflite_runtime probe of {model_path} failed: {exc}") from exc
    if res.returncode < 0:
        raise ModelError(
            f"tflite_runtime crashed (signal {-res.returncode}) loading {model_path}: "
            "not a valid TFLite model (truncated or corrupt flatbuffer)"
        )
    if res.returncode != 0:
        why = res.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ModelError(
            f"tflite_runtime cannot load {model_path}: {why[-1] if why else res.returncode}"
        )


_BANNERS = ("Created TensorFlow Lite XNNPACK delegate",)


@contextlib.contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """Catch what the runtime's C++ writes on fd 2 while it opens a model.

    The runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." past Python's
    logging, and a technician reads any stderr line at start as a fault. The known banner is
    logged at DEBUG; anything else the runtime says is logged at WARNING, so nothing is lost.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
    for line in text.splitlines():
        if line.strip():
            level = logging.DEBUG if any(b in line for b in _BANNERS) else logging.WARNING
            _LOGGER.log(level, "tflite: %s", line.strip())


def _open(interpreter_cls: Any, data: bytes, runtime: str, model_path: Path, rows: int) -> Any:
    """An interpreter with ``rows`` input rows, its tensors checked against the contract."""
    try:
        with _native_stderr_to_log():
            interp = interpreter_cls(model_content=data, num_threads=1)
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{runtime} cannot load {model_path}: {exc}") from exc
    _check_tensors(interp, model_path, 1)
    if rows != 1:
        try:
            interp.resize_tensor_input(interp.get_input_details()[0]["index"], [rows, N_FEATURES])
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(
                f"{runtime} cannot batch {rows} rows with {model_path}: {exc}"
            ) from exc
        _check_tensors(interp, model_path, rows)
    return interp


class CouponScorer:
    """Acceptance probability of a coupon in a context, from the verified on-device model."""

    def __init__(
        self, single: Any, batch: Any, runtime: str, card: dict[str, Any], model_path: Path
    ) -> None:
        self.runtime = runtime
        self.card = card
        self.model_path = model_path
        self.model_id: str = f"coupon-{card['model_version']}+{str(card['sha256'])[:12]}"
        self._single, self._batch = single, batch
        self._in1, self._out1 = _check_tensors(single, model_path, 1)
        self._inb, self._outb = _check_tensors(batch, model_path, BATCH)
        self._x1 = np.zeros((1, N_FEATURES), dtype=np.float32)
        self._xb = np.zeros((BATCH, N_FEATURES), dtype=np.float32)

    @classmethod
    def load(cls, model_path: Path | None = None, card_path: Path | None = None) -> CouponScorer:
        """Read, verify and open a model (defaults: the model shipped in the package)."""
        model_path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        card_path = Path(card_path) if card_path is not None else card_path_for(model_path)
        try:
            data = model_path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read model {model_path}: {exc.strerror or exc}") from exc
        card = read_card(card_path)
        verify_card(data, model_path, card, card_path)
        try:
            check_tflite(data)
        except FlatbufferError as exc:
            raise ModelError(f"{model_path} is not a valid TFLite model: {exc}") from exc
        runtime, interpreter_cls = import_interpreter()
        if runtime == "tflite_runtime":
            probe_in_child(data, model_path)
        single = _open(interpreter_cls, data, runtime, model_path, 1)
        batch = _open(interpreter_cls, data, runtime, model_path, BATCH)
        scorer = cls(single, batch, runtime, card, model_path)
        scorer._check_canaries(card_path)
        _LOGGER.info("loaded %s with %s from %s", scorer.model_id, runtime, model_path)
        return scorer

    def check_canaries(self) -> None:
        """Re-run the card's canaries on the live interpreter (probation after a swap)."""
        self._check_canaries(card_path_for(self.model_path))

    def _check_canaries(self, card_path: Path) -> None:
        """Run the card's canary inputs; their outputs must match the card."""
        canaries = self.card.get("canaries")
        if not canaries:
            return
        try:
            x = np.asarray(canaries["inputs"], dtype=np.float32).reshape(-1, N_FEATURES)
            want = np.asarray(canaries["outputs"], dtype=np.float64).reshape(-1)
            tol = float(canaries.get("tolerance", 1e-4))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"canaries in card {card_path} are malformed: {exc}") from exc
        if len(x) != len(want) or len(x) > BATCH:
            raise ModelError(f"canaries in card {card_path}: need up to {BATCH} input/output pairs")
        got = self._run_batch(x)
        bad = np.flatnonzero(~(np.abs(got - want) <= tol))
        if bad.size:
            i = int(bad[0])
            raise ModelError(
                f"canary {i} mismatch: {self.model_path} gives {got[i]:.7f}, card {card_path} "
                f"expects {want[i]:.7f} (tolerance {tol:g})"
            )

    def _run_batch(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Probabilities of up to BATCH encoded rows."""
        n = len(x)
        self._xb.fill(0.0)
        self._xb[:n] = x
        self._batch.set_tensor(self._inb, self._xb)
        self._batch.invoke()
        out: npt.NDArray[np.float64] = self._batch.get_tensor(self._outb)[:n, 0].astype(np.float64)
        return out

    def score(self, inp: FeatureInput) -> float:
        """Acceptance probability in [0, 1] for one (context, coupon) pair."""
        x = self._x1
        x.fill(0.0)
        encode_into(inp, x[0])
        self._single.set_tensor(self._in1, x)
        self._single.invoke()
        return float(self._single.get_tensor(self._out1)[0, 0])

    def score_batch(self, rows: Sequence[FeatureInput]) -> list[float]:
        """Acceptance probabilities, one per row, in order."""
        if len(rows) == 1:
            return [self.score(rows[0])]
        out: list[float] = []
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            x = self._xb
            x.fill(0.0)
            for i, inp in enumerate(chunk):
                encode_into(inp, x[i])
            self._batch.set_tensor(self._inb, x)
            self._batch.invoke()
            out.extend(float(p) for p in self._batch.get_tensor(self._outb)[: len(chunk), 0])
        return out

    def score_encoded(self, x: npt.NDArray[np.float32]) -> list[float]:
        """Probabilities of already encoded rows, shape (n, N_FEATURES) (tests, benchmarks)."""
        x = np.asarray(x, dtype=np.float32).reshape(-1, N_FEATURES)
        if len(x) == 1:
            self._single.set_tensor(self._in1, x)
            self._single.invoke()
            return [float(self._single.get_tensor(self._out1)[0, 0])]
        out: list[float] = []
        for start in range(0, len(x), BATCH):
            out.extend(float(p) for p in self._run_batch(x[start : start + BATCH]))
        return out
