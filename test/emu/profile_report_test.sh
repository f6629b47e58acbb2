#!/usr/bin/env bash
# Emulation builds (docs/cuda_emulation.md): the memory-access profile end to end. The emulator's
# test case that launches a kernel before, inside and after a cudaProfilerStart/Stop range runs
# with LOCKSTEP_EMU_PROFILE set; the file must hold the launch inside the range only, and
# emu/profile_report.py must read it into its tables.
#   profile_report_test.sh PYTHON LOCKSTEP_EMU_TESTS PROFILE_REPORT_PY
set -euo pipefail
python=$1 tests=$2 report=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
LOCKSTEP_EMU_PROFILE="$dir/profile-%p.tsv" "$tests" \
  "emulator: cudaProfilerStart and Stop bound the profile*" >/dev/null
file=$(ls "$dir"/profile-*.tsv)  # %p: the process id
grep -q $'^launch\tblock_sum_kernel\t4\t256\t' "$file"
if grep -q $'^launch\t\\(fill_kernel\\|increment_kernel\\)' "$file"; then
  echo "launches outside the cudaProfilerStart/Stop range were profiled" >&2
  exit 1
fi
out=$("$python" "$report" "$file" --steps 1)
echo "$out"
grep -q '^Estimated device time per step: ' <<<"$out"
grep -q '^| block_sum_kernel | 1.0 | ' <<<"$out"
