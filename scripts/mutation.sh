#!/usr/bin/env bash
# Mutation testing of the privacy and delivery core with mutmut (modules and tests in
# pyproject.toml [tool.mutmut]). Run after the README's test command has set up .venv:
#   ./scripts/mutation.sh
# Not part of the default test run (it takes minutes). Ends with one line:
#   mutation score: P% (killed K of N)
# and writes per-module counts to mutants/score.txt (docs/TESTING.md has the table).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${SHELFEDGE_VENV:-$ROOT/.venv}"
export SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy
rm -rf mutants
"$VENV/bin/mutmut" run --max-children "${MUTMUT_CHILDREN:-2}" > mutants.log 2>&1 || true
"$VENV/bin/mutmut" results --all true > mutants.results 2>/dev/null || true
mkdir -p mutants
awk -F': ' '
  { name=$1; gsub(/^ +/, "", name); n=split(name, parts, "."); mod=parts[1]; for (i=2; i<n; i++) mod=mod "." parts[i]
    st=$2; total[mod]++; all++
    if (st=="killed" || st=="timeout") { killed[mod]++; k++ }
    if (st=="survived") surv[mod]++
    if (st=="no tests") none[mod]++
    if (st=="not checked") unchecked++ }
  END {
    for (m in total) printf "%-28s killed %4d  survived %4d  no tests %3d  of %4d  (%.0f%%)\n", m, killed[m], surv[m], none[m], total[m], 100*killed[m]/total[m] > "mutants/score.txt"
    if (all == 0 || all == unchecked) { print "mutation score: n/a (no mutants ran; see mutants.log)"; exit 1 }
    printf "mutation score: %.0f%% (killed %d of %d)\n", 100*k/all, k, all }
' mutants.results
