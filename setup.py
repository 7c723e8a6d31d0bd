"""Build of the xentfast extension.

The extension itself is compiled for the baseline of the target (never
for the build machine's own CPU by default: a wheel must run on any CPU of its architecture).
On x86-64 the AVX2+FMA and AVX-512 kernels are compiled separately, each
with only its own ISA flags, and linked in; dispatch.c decides at run time
which one may run.  On AArch64 (Linux, macOS arm64) the NEON kernels
(neon.c) are built with no extra flag: NEON is part of that baseline, and
dispatch.c selects them without detection.  On other CPUs only the scalar
kernels are built.

Environment:
  XENTFAST_NATIVE=1      add -march=native to every file (local builds only;
                         the result may crash on other CPUs)
  XENTFAST_SANITIZE=1    build with -fsanitize=address,undefined and Cython
                         bounds checking (see tools/sanitize.sh)
  XENTFAST_NO_OPENMP=1   build without OpenMP
"""
import os
import platform
import sys
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
INCLUDE = os.path.join("include")
KERNELS = os.path.join("src", "xentfast", "kernels")
IS_X86_64 = platform.machine().lower() in ("x86_64", "amd64", "x64")
# platform.machine(): "aarch64" on Linux, "arm64" on macOS and Windows
IS_AARCH64 = platform.machine().lower() in ("aarch64", "arm64")
SANITIZE = os.environ.get("XENTFAST_SANITIZE") == "1"
NATIVE = os.environ.get("XENTFAST_NATIVE") == "1"

# Per-ISA kernel files and the only flags each is compiled with.
ISA_FLAGS_GCC = {
    "avx2.c": ["-mavx2", "-mfma"],
    "avx512.c": ["-mavx512f", "-mavx512dq", "-mavx2", "-mfma"],
}
ISA_FLAGS_MSVC = {"avx2.c": ["/arch:AVX2"], "avx512.c": ["/arch:AVX512"]}


def _warn(message):
    bar = "*" * 78
    sys.stderr.write(f"\n{bar}\nWARNING (xentfast build): {message}\n{bar}\n\n")


class BuildExt(build_ext):
    """build_ext that adds OpenMP when the compiler has it and compiles the
    ISA-specific kernel files with their own flags."""

    def _is_msvc(self):
        return self.compiler.compiler_type == "msvc"

    def _base_flags(self):
        if self._is_msvc():
            return ["/O2"]
        # -ffp-contract=off: every FMA in the kernels is written out; the
        # compiler fusing a multiply and an add on its own would do so
        # differently in different inlined copies of the same formula (a
        # deferred softcap row and a row written at once would then differ
        # in the last bit, and results would depend on the thread count)
        flags = ["-O3", "-ffp-contract=off", "-Wall", "-Wno-unused-function"]
        if SANITIZE:
            flags += ["-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                      "-fno-sanitize-recover=undefined"]
        if NATIVE:
            _warn("XENTFAST_NATIVE=1: building with -march=native; this build may crash on "
                  "other CPUs. Never distribute it.")
            flags.append("-march=native")  # opt-in only: XENTFAST_NATIVE=1
        return flags

    def _openmp_flags(self):
        """(compile flags, link flags) for OpenMP, or ([], []) with a warning."""
        if os.environ.get("XENTFAST_NO_OPENMP") == "1":
            _warn("XENTFAST_NO_OPENMP=1: building without OpenMP; every call runs on one thread.")
            return [], []
        if self._is_msvc():
            return ["/openmp"], []
        if sys.platform == "darwin":
            candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
        else:
            candidates = [(["-fopenmp"], ["-fopenmp"])]
        code = textwrap.dedent("""
            #include <omp.h>
            int main(void) { int n = 0;
            #pragma omp parallel reduction(+:n)
              n += 1;
              return n > 0 ? 0 : 1; }
        """)
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "omp_check.c")
            with open(src, "w") as f:
                f.write(code)
            for cflags, lflags in candidates:
                try:
                    objs = self.compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                    # LDFLAGS too: where libomp lives (Homebrew on macOS)
                    self.compiler.link_executable(
                        objs, "omp_check", output_dir=tmp,
                        extra_postargs=lflags + os.environ.get("LDFLAGS", "").split())
                    return cflags, lflags
                except Exception:  # noqa: BLE001 - any failure means "no OpenMP"
                    continue
        _warn("the compiler does not support OpenMP (-fopenmp failed). xentfast is being "
              "built WITHOUT threads: every call will run on one core. Install an "
              "OpenMP-capable compiler (gcc, or clang with libomp) and rebuild for speed.")
        return [], []

    def build_extension(self, ext):
        base = self._base_flags()
        omp_c, omp_l = self._openmp_flags()
        ext.extra_compile_args = base + omp_c
        ext.extra_link_args = list(ext.extra_link_args) + omp_l
        if SANITIZE and not self._is_msvc():
            ext.extra_link_args += ["-fsanitize=address,undefined"]
        if IS_X86_64:
            isa_flags = ISA_FLAGS_MSVC if self._is_msvc() else ISA_FLAGS_GCC
            objects = []
            for name, flags in isa_flags.items():
                objects += self.compiler.compile(
                    [os.path.join(KERNELS, name)],
                    output_dir=self.build_temp,
                    macros=ext.define_macros,
                    include_dirs=ext.include_dirs,
                    extra_postargs=base + flags,
                    depends=ext.depends,
                )
            ext.extra_objects = list(ext.extra_objects) + objects
        super().build_extension(ext)


def _headers():
    inc = os.path.join(INCLUDE, "xentfast")
    return [os.path.join(inc, h) for h in sorted(os.listdir(os.path.join(ROOT, inc)))]


macros = [("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")]
if IS_X86_64:
    macros.append(("XF_HAVE_X86_KERNELS", "1"))
# neon.c is compiled with the extension's own flags (no ISA flag needed);
# it holds code only where the compiler targets __aarch64__
NEON_SOURCES = [os.path.join(KERNELS, "neon.c")] if IS_AARCH64 else []
if IS_AARCH64:
    macros.append(("XF_HAVE_NEON_KERNELS", "1"))

extension = Extension(
    "xentfast._core",
    sources=[
        os.path.join("src", "xentfast", "_core.pyx"),
        os.path.join(KERNELS, "dispatch.c"),
        os.path.join(KERNELS, "plan.c"),
        os.path.join(KERNELS, "scalar.c"),
    ] + NEON_SOURCES,
    include_dirs=[INCLUDE, np.get_include()],
    define_macros=macros,
    depends=_headers() + [os.path.join(KERNELS, n) for n in ISA_FLAGS_GCC]
    + [os.path.join(KERNELS, "neon.c")]
    + [os.path.join("src", "xentfast", "_kernels.pxd")],
)

# Bounds checks are off in the shipped build (the Python layer validates
# every shape) and on in the sanitizer build, where they catch glue bugs.
directives = {"language_level": 3, "cdivision": True, "boundscheck": SANITIZE,
              "wraparound": SANITIZE, "initializedcheck": SANITIZE}

setup(
    ext_modules=cythonize([extension], compiler_directives=directives),
    cmdclass={"build_ext": BuildExt},
)
