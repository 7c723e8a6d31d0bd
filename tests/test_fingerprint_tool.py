"""tools/fingerprint.py keeps working: it records, compares and tells a changed bit."""
import importlib.util
import pathlib

import numpy as np

import xentfast

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "fingerprint.py"
CASES = ("plain_64x1000_f32_grad", "softcap30_f32_grad")


def _tool():
    spec = importlib.util.spec_from_file_location("fingerprint_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_record_then_compare(tmp_path, capsys):
    fp = _tool()
    best = xentfast.backend()
    args = ["--backend", "scalar"] + [a for name in CASES for a in ("--case", name)]
    record = tmp_path / "fp.txt"
    assert fp.main(args + ["--out", str(record)]) == 0
    lines = record.read_text().splitlines()
    assert len(lines) == len(CASES) * len(fp.THREADS)
    for line in lines:
        backend, threads, name, digest = line.split()
        assert backend == "scalar" and int(threads) in fp.THREADS and name in CASES
        assert len(digest) == 16 and int(digest, 16) >= 0
    # the rows of a case are bitwise the same for any thread count
    for name in CASES:
        assert len({ln.split()[3] for ln in lines if ln.split()[2] == name}) == 1
    assert xentfast.backend() == best  # the best backend is restored

    capsys.readouterr()
    assert fp.main(args + ["--compare", str(record)]) == 0
    assert f"all {len(lines)} fingerprints identical" in capsys.readouterr().out

    changed = lines[0].rsplit(" ", 1)[0] + " 0123456789abcdef"
    record.write_text("\n".join([changed] + lines[1:]) + "\n")
    assert fp.main(args + ["--compare", str(record)]) == 1
    reported = capsys.readouterr().out.splitlines()
    assert reported == [f"DIFFERS {lines[0]} (was 0123456789abcdef)"]


def test_oracle_distances_and_bit_sensitivity(capsys):
    fp = _tool()
    assert fp.main(["--backend", "scalar", "--case", CASES[0], "--oracle"]) == 0
    for line in capsys.readouterr().out.splitlines():
        fields = dict(f.split("=") for f in line.split()[4:])
        assert 0 <= float(fields["loss_rel"]) < 1e-6
        assert 0 <= float(fields["grad_abs"]) < 1e-6
    # one bit of one output, or its dtype or shape, changes the fingerprint
    grad = np.ones((2, 3), np.float32)
    base = fp.fingerprint([("loss", 1.0), ("grad", grad)])
    flipped = grad.copy()
    flipped[1, 2] = np.nextafter(np.float32(1), np.float32(2))
    assert fp.fingerprint([("loss", 1.0), ("grad", flipped)]) != base
    assert fp.fingerprint([("loss", np.nextafter(1.0, 2.0)), ("grad", grad)]) != base
    assert fp.fingerprint([("loss", 1.0), ("grad", grad.reshape(3, 2))]) != base
    assert fp.fingerprint([("loss", 1.0), ("grad", grad.view(np.int32))]) != base
    assert fp.fingerprint([("loss", 1.0), ("grad", grad)]) == base
