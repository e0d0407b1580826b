#!/usr/bin/env bash
# Issue 22's levers on the 12-game development suite, one `jitrl eval --games` run each, one after another.
#
#   bench/suite_levers.sh                      # every lever below, in this order
#   bench/suite_levers.sh replay-best novelty  # only these
#   SUITE_GAMES=enchanter,jewel bench/suite_levers.sh defaults  # these games first (a later run of all 12 resumes it)
#
# Each run is the defaults plus the lever's flags (the two levers measured before back-off states became the
# default, 2026-12-05, keep the defaults of then: --no-backoff-states): 30 episodes × 60 steps × 2 seeds of the jitrl arm,
# two episodes in flight (--workers 2, one llama.cpp thread each: JITRL_THREADS=1), into
# bench/results/suite12-levers/<lever>/. A run resumes where it stopped, so the script can be stopped and
# started again; a lever whose run fails is named at the end and the others still run (exit status 1).
# Compare with bench/games_table.py (bench/RESULTS.md, "Every lever on the 12 games").
set -euo pipefail
cd "$(dirname "$0")/.."
export JITRL_THREADS="${JITRL_THREADS:-1}"
GAMES=${SUITE_GAMES:-zork1,zork2,detective,spellbrkr,enchanter,advent,inhumane,sorcerer,omniquest,jewel,snacktime,reverb}
declare -A FLAGS=(
  [defaults]=""  # the defaults of the code that plays it, the column every lever is read against
  [replay-best]="--replay-best --no-backoff-states"
  [puct-no-avoid-cycles]="--exploration puct --no-avoid-cycles"
  [prompt-inventory]="--prompt-inventory --no-backoff-states"
  [novelty]="--novelty 1"
  [backoff-states]="--backoff-states"
  [paper-bonus]="--exploration paper --alpha 5 --bonus-prob 0.65"
  [returns-backup]="--returns backup"
  [step-rewards]="--step-rewards both"
  [avoid-deaths]="--avoid-deaths"
  [avoid-deaths-own]="--avoid-deaths-own"
  [avoid-deaths-h2]="--avoid-deaths-own --avoid-deaths-horizon 2"
  [safe-cycles]="--safe-cycles"
  [exact-all]="--exact-all"
  [state-hash-local]="--state-hash local"
  [death-credit-5]="--death-credit 5"
  [death-penalty-30]="--death-penalty 30"
  [cautious-after-4]="--cautious-after 4"  # measured first; the default since 2026-12-07 is 5 (the same play on these games)
  [go-explore]="--go-explore"  # the default since 2026-12-08 (the defaults column before it: --no-go-explore)
)
ORDER=(defaults replay-best puct-no-avoid-cycles prompt-inventory novelty backoff-states paper-bonus returns-backup step-rewards avoid-deaths avoid-deaths-own avoid-deaths-h2 safe-cycles death-penalty-30 exact-all state-hash-local death-credit-5 cautious-after-4 go-explore)
[ $# -gt 0 ] && ORDER=("$@")
for lever in "${ORDER[@]}"; do
  [ -n "${FLAGS[$lever]+x}" ] || { echo "error: unknown lever '$lever' (one of: ${!FLAGS[*]})" >&2; exit 2; }
done
failed=()
for lever in "${ORDER[@]}"; do
  # shellcheck disable=SC2086  # the flags are words
  python -m jitrl_cli eval --games "$GAMES" --episodes 30 --max-steps 60 --arms jitrl --seeds 2 --workers 2 \
      ${FLAGS[$lever]} --out "bench/results/suite12-levers/$lever" || failed+=("$lever")
done
[ ${#failed[@]} -eq 0 ] || { echo "error: these levers' runs failed: ${failed[*]}" >&2; exit 1; }
