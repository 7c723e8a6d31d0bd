"""Smoke tests of examples/: each script runs, briefly, as a user would run it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="no examples/ next to tests/")


def run_example(name, *args, cwd):
    """Run examples/<name> in `cwd` (never in the repository: no files left there)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("name", ["char_lm.py", "label_smoothing.py", "mlp_digits.py"])
def test_help_is_complete(name, tmp_path):
    """--help works, its description is whole sentences, and every option says
    what it is."""
    out = run_example(name, "--help", cwd=tmp_path)
    description = out.split("\n\n")[1]
    assert description.rstrip().endswith("."), description
    lines = out.split("options:")[1].splitlines()
    bare = []
    for i, line in enumerate(lines):
        if not line.startswith("  -"):
            continue
        has_help_here = "  " in line.strip()  # help text after the option, 2+ spaces
        continued = i + 1 < len(lines) and lines[i + 1].startswith(" " * 8)
        if not (has_help_here or continued):
            bare.append(line.strip())
    assert not bare, f"{name} --help: options without help text: {bare}"
    assert list(tmp_path.iterdir()) == []


def test_mlp_digits(tmp_path):
    import sklearn  # noqa: F401  (in the test extra: a missing one fails, not skips)
    plot = tmp_path / "curves.png"
    out = run_example("mlp_digits.py", "--epochs", "3", "--plot", str(plot), cwd=tmp_path)
    epochs = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(epochs) == 3
    for word in ("train loss", "val loss", "acc", "perplexity"):
        assert word in epochs[0]
    assert "test: loss" in out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plot" in out
    else:
        assert plot.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == (["curves.png"] if plot.exists() else [])


def test_mlp_early_stopping_keeps_the_best_epoch():
    import sklearn  # noqa: F401  (in the test extra: a missing one fails, not skips)
    sys.path.insert(0, str(EXAMPLES))
    try:
        import _mlp
    finally:
        sys.path.remove(str(EXAMPLES))
    import numpy as np

    data = _mlp.load_digits(seed=1)
    model = _mlp.MLP([64, 32, 10], np.random.default_rng(1))
    lines = []
    history = _mlp.fit(model, data, epochs=300, patience=2, lr=1e-2, log=lines.append)
    assert history.stopped_early
    assert "early stop" in lines[-1]
    val_losses = [m.loss for m in history.val]
    assert history.best_epoch == 1 + int(np.argmin(val_losses))
    assert len(val_losses) == history.best_epoch + 2
    # the weights kept are the best epoch's
    assert _mlp.evaluate(model, data.val).loss == pytest.approx(min(val_losses), rel=1e-6)


def test_char_lm(tmp_path):
    out = run_example("char_lm.py", "--quick", cwd=tmp_path)
    for text in ("nats", "bits", "perplexity", "sample at temperature 0.5",
                 "sample at temperature 1.2"):
        assert text in out
    assert list(tmp_path.iterdir()) == []


def test_label_smoothing(tmp_path):
    import sklearn  # noqa: F401  (in the test extra: a missing one fails, not skips)
    out = run_example("label_smoothing.py", "--epochs", "3", cwd=tmp_path)
    assert "mean confidence" in out and "ECE" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("0 ", "0.1 "))]
    assert [r[0] for r in rows] == ["0", "0.1"]

