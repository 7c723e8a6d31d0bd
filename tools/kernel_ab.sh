#!/usr/bin/env bash
# Before/after of a change to the row kernels (AVX-512, or AVX2), in one process:
# OLD_TREE's kernels (a checkout of the old commit, e.g. `git worktree add
# /tmp/old HEAD`) against this tree's, called in turn (tools/kernel_ab.c),
# each by its own plan for the thread count (tools/kernel_ab_run.c).
#
#   tools/kernel_ab.sh OLD_TREE N C REPS MODE [THREADS]
#   tools/kernel_ab.sh /tmp/old 8192 32000 8 inplace 2
#
# NEWFLAGS adds compiler flags to this tree's build only (e.g.
# NEWFLAGS=-DXF_PREFETCH_BYTES=32768 with OLD_TREE this tree: a setting
# against the default).  ISA=avx2 runs the AVX2 kernels instead.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OLD=$(cd "$1" && pwd)
shift
ISA=${ISA:-avx512}
case "$ISA" in
avx512) FLAGS="-O3 -ffp-contract=off -mavx512f -mavx512dq -mavx2 -mfma" ;;
avx2) FLAGS="-O3 -ffp-contract=off -mavx2 -mfma" ;;
*)
    echo "ISA must be avx512 or avx2" >&2
    exit 2
    ;;
esac
FLAGS="$FLAGS -DKERNEL_AB_TABLE=xf_table_$ISA"
DIR=$(mktemp -d "${TMPDIR:-/tmp}/kernel_ab.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
# one relocatable object per build: its kernels, its plan, and the runner
# (kernel_ab_run.c) compiled against its own headers
build() { # TREE NAME EXTRA_FLAGS
    for f in "$1/src/xentfast/kernels/$ISA.c" "$1/src/xentfast/kernels/plan.c" \
        "$ROOT/tools/kernel_ab_run.c"; do
        # shellcheck disable=SC2086
        gcc $FLAGS $3 -fopenmp -c -I"$1/include" "$f" -o "$DIR/$2_$(basename "$f" .c).o"
    done
    ld -r "$DIR/$2"_*.o -o "$DIR/$2.o"
}
build "$OLD" old ""
nm --defined-only -g "$DIR/old.o" | awk '{print $3, "old_" $3}' >"$DIR/names"
objcopy --redefine-syms="$DIR/names" "$DIR/old.o"
build "$ROOT" new "${NEWFLAGS:-}"
# shellcheck disable=SC2086
gcc $FLAGS -fopenmp -I"$ROOT/include" -I"$ROOT/tools" "$ROOT/tools/kernel_ab.c" "$DIR/old.o" \
    "$DIR/new.o" -o "$DIR/kernel_ab" -lm
"$DIR/kernel_ab" "$@"
