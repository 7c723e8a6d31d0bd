#!/bin/sh
# Builds tools/neon/harness.c for AArch64 with the NEON kernels (the files
# setup.py compiles there: neon.c, scalar.c, plan.c, dispatch.c), statically
# linked with OpenMP so that qemu-aarch64 runs it with no sysroot.
#
#   tools/neon/build.sh [OUTPUT]        (default: build/neon/harness)
#
# CC defaults to aarch64-linux-gnu-gcc (Debian: gcc-aarch64-linux-gnu).
# Run it with:  qemu-aarch64 build/neon/harness neon 1,2,3 CASES OUT
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/build/neon/harness}
CC=${CC:-aarch64-linux-gnu-gcc}
mkdir -p "$(dirname "$OUT")"
K=$ROOT/src/xentfast/kernels
# the extension's flags (setup.py): no ISA flag, FMAs only where written
exec "$CC" -O3 -ffp-contract=off -Wall -fopenmp \
    -DXF_HAVE_NEON_KERNELS=1 -I"$ROOT/include" \
    "$ROOT/tools/neon/harness.c" "$K/neon.c" "$K/scalar.c" "$K/plan.c" "$K/dispatch.c" \
    -static -lm -o "$OUT"
