"""The type stubs: mypy --strict passes on the examples and on typed_usage.py, the
stubs describe exactly the runtime API, and the typed snippet runs."""
import ast
import dataclasses
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import xentfast

ROOT = Path(__file__).resolve().parents[1]
STUB = Path(xentfast.__file__).with_name("__init__.pyi")


def run_mypy(tmp_path, *args):
    import mypy  # noqa: F401  (in the test extra: a missing one fails, not skips)
    if not (ROOT / "pyproject.toml").is_file() or not (ROOT / "examples").is_dir():
        pytest.skip("needs the source tree: pyproject.toml (the mypy configuration) and "
                    "examples/")
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
           "--cache-dir", str(tmp_path / "mypy_cache"), *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, MYPY_FORCE_COLOR="0"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_mypy_strict_on_examples_and_typed_usage(tmp_path):
    # the files and strictness come from [tool.mypy] in pyproject.toml
    out = run_mypy(tmp_path)
    assert "Success" in out


@pytest.mark.slow
def test_mypy_strict_on_the_torch_adapter(tmp_path):
    pytest.importorskip("torch")
    run_mypy(tmp_path, str(ROOT / "src" / "xentfast" / "torch.py"))


def test_typed_usage_runs():
    import typed_usage

    typed_usage.main()


# --------------------------------------------------------------------------------------
# the stubs against the runtime API


def stub_module():
    assert STUB.is_file(), f"{STUB} is missing: the .pyi stubs must ship with the package"
    return ast.parse(STUB.read_text())


def stub_functions(tree):
    """name -> list of ast.FunctionDef (one per overload)."""
    functions = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            functions.setdefault(node.name, []).append(node)
    return functions


def parameters(fn):
    """(positional names, keyword-only names) of a stub function."""
    a = fn.args
    return [p.arg for p in a.posonlyargs + a.args], {p.arg for p in a.kwonlyargs}


def test_stub_all_is_the_runtime_all():
    tree = stub_module()
    stub_all = next(ast.literal_eval(node.value) for node in tree.body
                    if isinstance(node, ast.Assign)
                    and any(getattr(t, "id", None) == "__all__" for t in node.targets))
    assert sorted(stub_all) == sorted(xentfast.__all__)


@pytest.mark.parametrize("name", [n for n in xentfast.__all__
                                  if inspect.isfunction(getattr(xentfast, n))])
def test_stub_signatures_match_runtime(name):
    overloads = stub_functions(stub_module()).get(name)
    assert overloads, f"{name} has no stub"
    runtime = inspect.signature(getattr(xentfast, name)).parameters.values()
    positional = [p.name for p in runtime
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keyword_only = {p.name for p in runtime if p.kind == p.KEYWORD_ONLY}
    if any(p.kind == p.VAR_KEYWORD for p in runtime):
        # e.g. perplexity(logits, target, **options): the stub spells the options out
        keyword_only = None
    for fn in overloads:
        stub_positional, stub_keyword_only = parameters(fn)
        assert stub_positional == positional, (name, stub_positional, positional)
        if keyword_only is not None:
            assert stub_keyword_only == keyword_only, (
                name, sorted(stub_keyword_only ^ keyword_only))


def test_stub_options_of_perplexity_are_cross_entropy_options():
    functions = stub_functions(stub_module())
    (ppl,) = functions["perplexity"]
    _, options = parameters(ppl)
    ce = set(inspect.signature(xentfast.cross_entropy).parameters)
    assert options <= ce - {"reduction", "return_z_loss"}


def test_stub_evaluation_fields():
    tree = stub_module()
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Evaluation")
    fields = [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)]
    properties = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    assert fields == [f.name for f in dataclasses.fields(xentfast.Evaluation)]
    runtime_properties = {n for klass in xentfast.Evaluation.__mro__
                          for n, v in vars(klass).items() if isinstance(v, property)}
    assert properties == runtime_properties
