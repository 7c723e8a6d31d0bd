#!/usr/bin/env bash
# Build tools/kernel_bench.c against one ISA's row kernels and run it, or
# count its instructions with callgrind (repeatable on a noisy machine).
#
#   tools/kernel_bench.sh [avx512|avx2] N C MODE [SOFTCAP [REPS [STREAM]]]
#   LS=0.1 ZL=1e-4 tools/kernel_bench.sh avx512 1024 32000 1 30 8 1   (options: kernel_bench.c)
#   CALLGRIND=1 tools/kernel_bench.sh avx2 64 32000 1 30 1
#
# With CALLGRIND=1 it prints the instructions executed inside the row kernel
# (valgrind 3.19 has no AVX-512: use avx2 there).  Examples of the figures
# in docs/design.md: `tools/kernel_bench.sh avx512 4 2000 1 30 20000` (rows
# in L1, softcap), `tools/kernel_bench.sh avx512 1024 32000 0 0 5 1` (DRAM).
#
#   TOOL=exp_mid_check tools/kernel_bench.sh [avx512|avx2]
#
# builds and runs tools/exp_mid_check.c instead (the softcap's tanh and exps:
# accuracy and speed).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ISA=${1:-avx512}
shift
case $ISA in
    avx512) FLAGS="-mavx512f -mavx512dq -mavx2 -mfma" ;;
    avx2) FLAGS="-mavx2 -mfma" ;;
    *) echo "unknown ISA $ISA (avx512 or avx2)" >&2; exit 2 ;;
esac
BIN=$(mktemp "${TMPDIR:-/tmp}/kernel_bench.XXXXXX")
trap 'rm -f "$BIN"' EXIT
# shellcheck disable=SC2086
gcc -O3 -ffp-contract=off $FLAGS -I"$ROOT/include" \
    -DXF_KERNEL_FILE="\"$ROOT/src/xentfast/kernels/$ISA.c\"" -DXF_ROWS="xf_rows_f32_$ISA" \
    -DXF_TABLE="xf_table_$ISA" \
    "$ROOT/tools/${TOOL:-kernel_bench}.c" "$ROOT/src/xentfast/kernels/plan.c" -o "$BIN" -lm
if [[ "${CALLGRIND:-0}" == 1 ]]; then
    valgrind --tool=callgrind --toggle-collect="xf_rows_f32_$ISA" --callgrind-out-file=/dev/null \
        "$BIN" "$@" 2>&1 | grep -E "Collected|N=" | sed 's/==[0-9]*== //'
else
    "$BIN" "$@"
fi
