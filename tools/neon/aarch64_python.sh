#!/bin/bash
# The Python test suite on an AArch64 CPython under qemu-aarch64: Debian's
# arm64 python3.11 unpacked into a sysroot, NumPy's aarch64 wheel, the
# extension cross-compiled with the NEON kernels.  Correctness only (emulated
# timings mean nothing); slow (the suite runs ~30x slower than natively).
#
#   tools/neon/aarch64_python.sh [WORKDIR] [PYTEST ARGS...]
#
# Needs: gcc-aarch64-linux-gnu qemu-user (apt), Cython and pip on the host,
# `dpkg --add-architecture arm64 && apt-get update` done once (for
# `apt-get download` of the arm64 interpreter; nothing is installed).
# BACKENDS_LINE: the extension's list of backend names, with "neon" (the line
# _core.pyx needs on AArch64), substituted in the copy built here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=${1:-/tmp/xentfast-aarch64}
shift || true
SYSROOT=$W/root SITE=$W/site PKG=$W/pkg
CC=${CC:-aarch64-linux-gnu-gcc}
mkdir -p "$W/debs" "$SYSROOT" "$SITE" "$PKG"

if [[ ! -x $SYSROOT/usr/bin/python3.11 ]]; then
    (cd "$W/debs" && apt-get download python3.11-minimal:arm64 libpython3.11-minimal:arm64 \
        libpython3.11-stdlib:arm64 libpython3.11-dev:arm64 libpython3.11:arm64 libexpat1:arm64 \
        zlib1g:arm64 libffi8:arm64 libssl3:arm64 libbz2-1.0:arm64 liblzma5:arm64 libuuid1:arm64 \
        libcrypt1:arm64 libncursesw6:arm64 libtinfo6:arm64 libsqlite3-0:arm64 libnsl2:arm64 \
        libtirpc3:arm64 libdb5.3:arm64 libreadline8:arm64)
    for d in "$W"/debs/*.deb; do dpkg -x "$d" "$SYSROOT"; done
    # the cross toolchain's glibc and libgomp, where the loader looks
    cp -a /usr/aarch64-linux-gnu/lib/. "$SYSROOT/lib/"
fi
if [[ ! -d $SITE/numpy ]]; then
    (cd "$W" && pip download -q --only-binary=:all: --platform manylinux2014_aarch64 \
        --python-version 311 --implementation cp "numpy>=2.1" pytest hypothesis threadpoolctl \
        -d "$W/wheels")
    for w in "$W"/wheels/*.whl; do python -m zipfile -e "$w" "$SITE/"; done
fi

# the package, with the extension cross-compiled
rm -rf "$PKG/xentfast"
cp -a "$ROOT/src/xentfast" "$PKG/xentfast"
rm -f "$PKG"/xentfast/*.so "$PKG"/xentfast/_core.c
sed -i 's/^BACKENDS = ("avx512", "avx2", "scalar")$/BACKENDS = ("avx512", "avx2", "neon", "scalar")/' \
    "$PKG/xentfast/_core.pyx"
grep -q '"neon"' "$PKG/xentfast/_core.pyx" || { echo "BACKENDS line not found" >&2; exit 1; }
cython -3 -X cdivision=True -X boundscheck=False -X wraparound=False -X initializedcheck=False \
    -I "$ROOT/include" "$PKG/xentfast/_core.pyx" -o "$PKG/xentfast/_core.c"
K=$ROOT/src/xentfast/kernels
"$CC" -shared -fPIC -O3 -ffp-contract=off -Wno-unused-function -fopenmp \
    -DXF_HAVE_NEON_KERNELS=1 -DNPY_NO_DEPRECATED_API=NPY_2_0_API_VERSION \
    -I"$ROOT/include" -I"$SYSROOT/usr/include/python3.11" \
    -I"$SYSROOT/usr/include" -I"$SITE/numpy/_core/include" \
    "$PKG/xentfast/_core.c" "$K/dispatch.c" "$K/plan.c" "$K/scalar.c" "$K/neon.c" \
    -o "$PKG/xentfast/_core.cpython-311-aarch64-linux-gnu.so"

cd "$ROOT"
exec qemu-aarch64 -L "$SYSROOT" \
    -E LD_LIBRARY_PATH="$SYSROOT/usr/lib/aarch64-linux-gnu:$SYSROOT/lib/aarch64-linux-gnu:$SYSROOT/lib" \
    -E PYTHONPATH="$PKG:$SITE" -E PYTHONDONTWRITEBYTECODE=1 \
    "$SYSROOT/usr/bin/python3.11" -m pytest -p no:cacheprovider "$@"
