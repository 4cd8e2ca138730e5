#!/usr/bin/env bash
# Parity and verification tests of the committed coupon model under tflite_runtime, in a venv
# of its own: tflite-runtime 2.14 (its last release) needs Python <= 3.11 and NumPy < 2, so it
# cannot share the project's environment (ai-edge-litert, NumPy 2).
#
#   scripts/test_tflite_runtime.sh [pytest args]
#
# Env: PYTHON        interpreter for the venv (default: python3.11, else python3; must be 3.9-3.11)
#      SHELFEDGE_TFLITE_VENV  keep/reuse the venv in this directory (default: a temp dir, removed)
#
# Benchmark tflite_runtime too: SHELFEDGE_TFLITE_VENV=/tmp/tflvenv scripts/test_tflite_runtime.sh
# then python scripts/bench_model.py --tflite-python /tmp/tflvenv/bin/python
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if ! "$PY" -c 'import sys; sys.exit(not ((3, 9) <= sys.version_info[:2] <= (3, 11)))'; then
    echo "test_tflite_runtime: $PY is $("$PY" -V 2>&1); tflite-runtime 2.14 needs Python 3.9-3.11" >&2
    exit 2
fi

if [[ -n "${SHELFEDGE_TFLITE_VENV:-}" ]]; then
    VENV="$SHELFEDGE_TFLITE_VENV"
else
    TMP="$(mktemp -d)"
    trap 'rm -rf "$TMP"' EXIT
    VENV="$TMP/venv"
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    "$PY" -m venv "$VENV"
fi
# tflite_runtime + NumPy 1.x, the test tools, and what importing edge.decide needs (pydantic,
# PyYAML via edge.config). No ai-edge-litert here, so the scorer can only use tflite_runtime.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "tflite-runtime==2.14.0" "numpy<2" "pytest>=8,<10" "hypothesis>=6.100,<7" \
    "pydantic>=2.6,<3" "PyYAML>=6.0,<7"

cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export SHELFEDGE_TFLITE_RUNTIME=tflite_runtime
"$VENV/bin/python" -c 'import tflite_runtime, numpy; print("tflite_runtime", tflite_runtime.__version__, "numpy", numpy.__version__)'
# --noconftest: the suite's shared fixtures (MQTT broker, asyncio) are not needed here.
"$VENV/bin/python" -m pytest -p no:cacheprovider --noconftest -q -W ignore::pytest.PytestConfigWarning \
    tests/decide/test_scorer.py tests/decide/test_features.py "$@"
