#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/*.cpp; clang, ASan + UBSan) and runs each for a time budget,
# one after another. Not part of CI (CI replays the seed corpora: ctest -R fuzz_replay_).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 60 s, every target
#
# Environment: LOCKSTEP_FUZZ_BUILD_DIR (default build-fuzz/), LOCKSTEP_FUZZ_FLAGS (extra libFuzzer
# flags, e.g. "-jobs=2 -workers=2" or "-max_len=16384").
# Each target fuzzes with <build>/work/<target>/corpus as its writable corpus (kept between runs,
# so later runs start where earlier ones stopped) and fuzz/corpus/<target> read-only, so the
# repository's corpus is never changed. Findings go to <build>/work/<target>/artifacts/<run>/;
# the script lists them with the command that reproduces each and exits 1 when any target found one.
# docs/fuzzing.md: what the targets check, how to add one, what to do with a finding.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LOCKSTEP_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || { echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2; }
shift $(( $# > 0 ? 1 : 0 ))

targets=("$@")
if (( ${#targets[@]} == 0 )); then
  for f in "$root"/fuzz/*.cpp; do
    name=$(basename "$f" .cpp)
    [[ $name == replay_main ]] || targets+=("$name")
  done
fi
for t in "${targets[@]}"; do
  [[ -f $root/fuzz/$t.cpp ]] || { echo "no fuzz target '$t' (fuzz/$t.cpp)" >&2; exit 2; }
done

command -v clang++ >/dev/null || { echo "scripts/fuzz.sh needs clang++ (libFuzzer)" >&2; exit 2; }
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}
# -O1 -g without NDEBUG: the asserts of header-only dependencies (nlohmann-json) stay on.
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DLOCKSTEP_WITH_CUDA=OFF -DLOCKSTEP_BUILD_FUZZ=ON -DLOCKSTEP_BUILD_TESTS=OFF \
  -DLOCKSTEP_BUILD_EXAMPLES=OFF -DLOCKSTEP_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "${LOCKSTEP_FUZZ_BUILD_JOBS:-$(nproc)}" \
  --target "${targets[@]/#/lockstep_fuzz_}"

# Scratch files (the safetensors target writes one per input, fsynced) go to memory when possible.
if [[ -z ${TMPDIR:-} && -d /dev/shm && -w /dev/shm ]]; then export TMPDIR=/dev/shm; fi

run=$(date +%Y%m%d-%H%M%S)
found=()
for t in "${targets[@]}"; do
  work=$build/work/$t
  artifacts=$work/artifacts/$run
  mkdir -p "$work/corpus" "$artifacts"
  flags=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
         -artifact_prefix="$artifacts/")
  [[ -f $root/fuzz/dict/$t.dict ]] && flags+=(-dict="$root/fuzz/dict/$t.dict")
  echo "== $t: ${seconds} s (corpus $work/corpus + fuzz/corpus/$t)"
  # libFuzzer writes new inputs only to the first corpus directory.
  rc=0
  # shellcheck disable=SC2086
  "$build/fuzz/lockstep_fuzz_$t" "${flags[@]}" ${LOCKSTEP_FUZZ_FLAGS:-} \
    "$work/corpus" "$root/fuzz/corpus/$t" >"$work/log.txt" 2>&1 || rc=$?
  if (( rc == 0 )); then
    echo "   no finding; $(grep -E '^stat::number_of_executed_units' "$work/log.txt" | awk '{print $2}') runs, log $work/log.txt"
  else
    echo "   FINDING, exit code $rc (log $work/log.txt):"
    grep -E 'ERROR: |runtime error|fuzz property violated|terminate called|what\(\)' "$work/log.txt" | head -5 | sed 's/^/     /' || true
  fi
  if [[ -n $(ls -A "$artifacts") ]] || (( rc != 0 )); then found+=("$t"); else rmdir "$artifacts"; fi
done

echo
if (( ${#found[@]} == 0 )); then
  echo "fuzz: no findings in ${targets[*]} (${seconds} s each)"
  exit 0
fi
echo "fuzz: findings in ${found[*]}:"
for t in "${found[@]}"; do
  for a in "$build/work/$t/artifacts/$run"/*; do
    [[ -f $a ]] || continue
    echo "  $a"
    echo "    reproduce: $build/fuzz/lockstep_fuzz_$t $a"
  done
done
echo "Fix the parser, then copy the (minimized: add -minimize_crash=1 -runs=10000) input into"
echo "fuzz/corpus/<target>/ as a regression (docs/fuzzing.md)."
exit 1
