#!/usr/bin/env bash
# Build xentfast with AddressSanitizer + UndefinedBehaviorSanitizer (and
# Cython bounds checking) into a separate venv and run the test suite under
# it, with leak detection on.  Exits non-zero on any sanitizer report or test
# failure.
#
#   tools/sanitize.sh [VENV_DIR] [-- PYTEST_ARGS...]
#
# VENV_DIR defaults to .venv-sanitize in the repository root; it is reused
# between runs (only the package is rebuilt).  Two passes:
#
#   1. errors: the whole suite (`tests -q -x -m "not slow and not huge"`)
#      under ASan + UBSan, without leak detection (fast allocation stacks);
#   2. leaks:  the tests that call every function many times, succeeding and
#      failing ($SANITIZE_LEAK_TESTS, default test_leaks, test_errors,
#      test_core, test_options, test_binary), again, with LeakSanitizer and
#      full allocation stacks (needed by tools/lsan.supp, and ~40x slower
#      for Python-heavy tests such as the fuzzer, hence the split).
#
# With PYTEST_ARGS, both passes run exactly those arguments.  Environment:
#   PYTHON                  interpreter that creates the venv (default: python3)
#   XENTFAST_FUZZ_EXAMPLES  fuzz examples of pass 1 (default here 2000)
#   SANITIZE_LEAK_TESTS     test files of pass 2 (space-separated)
#   SANITIZE_KEEP=1         keep the scratch build tree (its path is printed)
#
# How it works, and why:
# * The build happens in a scratch copy of the source tree without build/,
#   generated C or .so files: setuptools skips an extension whose outputs
#   look newer than its sources, and cythonize does not regenerate _core.c
#   when only compiler directives change, so building in place could
#   silently reuse an unsanitized object.  The script then checks that the
#   installed extension really links the ASan runtime and was generated
#   with bounds checks.
# * --no-build-isolation with numpy/Cython/setuptools pre-installed in the
#   venv: no download per build, and the build sees XENTFAST_SANITIZE=1.
# * The ASan runtime must be the first library in the process, before the
#   (uninstrumented) python binary's own: LD_PRELOAD=libasan.so.
# * PYTHONMALLOC=malloc sends Python's small objects through malloc, where
#   ASan can see overruns and LeakSanitizer can see leaked objects.
# * tools/lsan.supp suppresses only leaks of CPython and numpy themselves
#   (interpreter start-up, imports, type and code objects that live until
#   exit).  Allocations made on behalf of a xentfast call are not suppressed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv-sanitize"
if [[ $# -gt 0 && "$1" != "--" ]]; then
    VENV=$(realpath -m "$1")
    shift
fi
if [[ $# -gt 0 && "$1" == "--" ]]; then
    shift
fi
CUSTOM_ARGS=0
if [[ $# -gt 0 ]]; then
    PYTEST_ARGS=("$@")
    CUSTOM_ARGS=1
else
    PYTEST_ARGS=(tests -q -x -m "not slow and not huge")
fi
PYTHON=${PYTHON:-python3}
START=$SECONDS

say() { printf '\n=== sanitize.sh: %s\n' "$*"; }
die() { printf '\nsanitize.sh: FAILED: %s\n' "$*" >&2; exit 1; }

command -v gcc >/dev/null || die "gcc is required (the sanitizer runtimes come with it)"
LIBASAN=$(gcc -print-file-name=libasan.so)
[[ -e "$LIBASAN" ]] || die "no libasan.so next to gcc (apt-get install gcc / libasan8)"
LIBASAN=$(realpath "$LIBASAN")

# --- 1. the venv -----------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
say "installing build and test dependencies (no torch)"
"$PY" -m pip install -q --disable-pip-version-check \
    "setuptools>=77" "Cython>=3.0" "numpy>=2.1" "pytest>=7" "pytest-benchmark>=4" \
    "hypothesis>=6" threadpoolctl scikit-learn mypy ml_dtypes scipy

# --- 2. a clean copy of the sources, built with the sanitizers -------------
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/xentfast-sanitize.XXXXXX")
cleanup() {
    if [[ "${SANITIZE_KEEP:-0}" == 1 ]]; then
        echo "sanitize.sh: build tree kept in $SCRATCH"
    else
        rm -rf "$SCRATCH"
    fi
}
trap cleanup EXIT
say "copying the source tree to $SCRATCH"
tar -C "$ROOT" \
    --exclude=./build --exclude=./dist --exclude='./.venv*' --exclude=./.git \
    --exclude='*.egg-info' --exclude='__pycache__' --exclude='*.so' \
    --exclude=./src/xentfast/_core.c --exclude=./src/xentfast/_core.html \
    --exclude=.pytest_cache --exclude=.hypothesis --exclude=.benchmarks \
    -cf - . | tar -C "$SCRATCH" -xf -

say "building with XENTFAST_SANITIZE=1"
(cd "$SCRATCH" && XENTFAST_SANITIZE=1 "$PY" -m pip install -q --no-build-isolation \
    --no-deps --force-reinstall --no-cache-dir . ) \
    || die "the sanitized build failed"

# --- 3. check the build really is the sanitized one ------------------------
SO=$(cd /tmp && "$PY" -c "import xentfast._core as c; print(c.__file__)" 2>/dev/null) \
    || SO=$(find "$VENV/lib" -path '*xentfast/_core*.so' | head -n1)
[[ -n "$SO" && -f "$SO" ]] || die "cannot find the installed xentfast._core extension"
readelf -d "$SO" | grep -q 'NEEDED.*libasan' \
    || die "$SO does not link libasan: XENTFAST_SANITIZE=1 did not take effect"
readelf -d "$SO" | grep -q 'NEEDED.*libubsan' \
    || die "$SO does not link libubsan: XENTFAST_SANITIZE=1 did not take effect"
GENERATED="$SCRATCH/src/xentfast/_core.c"
[[ -f "$GENERATED" ]] && grep -q '__Pyx_RaiseBufferIndexError' "$GENERATED" \
    || die "_core.c was generated without Cython bounds checks"
echo "ok: $SO links ASan+UBSan; _core.c has bounds checks"

# --- 4. the test suite under the sanitizers --------------------------------
SUPP="$ROOT/tools/lsan.supp"
[[ -f "$SUPP" ]] || die "missing $SUPP"
# allocator_may_return_null=1: an impossible allocation makes malloc return
# NULL (-> MemoryError), as without ASan, instead of aborting.
ASAN_COMMON="allocator_may_return_null=1:halt_on_error=1:handle_abort=1:exitcode=86"
export LSAN_OPTIONS="suppressions=$SUPP:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=88"
export PYTHONMALLOC=malloc
export PYTHONFAULTHANDLER=1
export XENTFAST_FUZZ_EXAMPLES=${XENTFAST_FUZZ_EXAMPLES:-2000}

# run_pass NAME ASAN_OPTIONS PYTEST_ARGS...: exits on any report or failure.
# --capture=sys: pytest's default capture redirects file descriptor 2 to a
# file that is lost when a sanitizer kills the process mid-test; the reports
# must reach the real stderr.  The tests import the venv's installed package.
run_pass() {
    local name=$1 options=$2
    shift 2
    say "pass $name: pytest $*"
    local t0=$SECONDS rc=0
    (cd "$ROOT" && ASAN_OPTIONS="$options" LD_PRELOAD="$LIBASAN" \
        "$PY" -m pytest -p no:cacheprovider --capture=sys "$@") || rc=$?
    case $rc in
        0) say "pass $name: clean in $((SECONDS - t0))s" ;;
        86) die "AddressSanitizer/LeakSanitizer report in pass $name (exit $rc): see above" ;;
        88) die "UndefinedBehaviorSanitizer report in pass $name (exit $rc): see above" ;;
        *) die "pytest exited $rc in pass $name (a test failure, or a crash)" ;;
    esac
}

# pass 1: memory errors and undefined behaviour, everywhere, fast stacks
run_pass errors "detect_leaks=0:$ASAN_COMMON" "${PYTEST_ARGS[@]}"

# pass 2: leaks, with full allocation stacks through CPython and NumPy (built
# without frame pointers: the fast unwinder would stop at their first frame
# and no suppression could tell their objects from ours)
if [[ $CUSTOM_ARGS == 1 ]]; then
    LEAK_ARGS=("${PYTEST_ARGS[@]}")
else
    LEAK_ARGS=()
    for f in ${SANITIZE_LEAK_TESTS:-tests/test_leaks.py tests/test_errors.py tests/test_core.py \
             tests/test_options.py tests/test_binary.py}; do
        if [[ -f "$ROOT/$f" ]]; then LEAK_ARGS+=("$f"); fi
    done
    [[ ${#LEAK_ARGS[@]} -gt 0 ]] || die "none of the leak-pass test files exists"
    LEAK_ARGS+=(-q -x -m "not slow and not huge")
fi
run_pass leaks "detect_leaks=1:fast_unwind_on_malloc=0:$ASAN_COMMON" "${LEAK_ARGS[@]}"

say "passed in $((SECONDS - START))s: no sanitizer report, no test failure"
