"""Backend and build information."""
from __future__ import annotations

import sys
import sysconfig

import numpy as np

from . import _core
from ._version import __version__


def backend() -> str:
    """Name of the kernels in use: ``"avx512"``, ``"avx2"`` or ``"scalar"``.

    Chosen once at import (the best this CPU and OS support) unless the
    environment variable ``XENTFAST_BACKEND`` names one.

    Examples
    --------
    >>> import xentfast
    >>> xentfast.backend() in ("avx512", "avx2", "scalar")
    True
    """
    return _core.backend()


def config() -> dict:
    """The facts :func:`show_config` prints, as a dict."""
    return {
        "version": __version__,
        "backend": _core.backend(),
        "supported_backends": _core.supported_backends(),
        "cpu_features": _core.cpu_features(),
        "compiler": sysconfig.get_config_var("CC") or "unknown",
        "openmp": _core.OPENMP,
        "default_threads": _core.max_threads(),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def show_config(file=None) -> None:
    """Print version, backend, CPU features, compiler, OpenMP and threads.

    Examples
    --------
    >>> import xentfast
    >>> xentfast.show_config()  # doctest: +ELLIPSIS
    xentfast ...
    """
    c = config()
    lines = [
        f"xentfast {c['version']}",
        f"  backend:            {c['backend']} (supported here: {', '.join(c['supported_backends'])})",
        f"  cpu features:       {', '.join(c['cpu_features']) or 'none detected'}",
        f"  compiler:           {c['compiler']}",
        f"  openmp:             {'on' if c['openmp'] else 'OFF (serial build)'}",
        f"  default threads:    {c['default_threads']}",
        f"  numpy / python:     {c['numpy']} / {c['python']}",
    ]
    print("\n".join(lines), file=file or sys.stdout)
