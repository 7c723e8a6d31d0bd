"""The benchmark's command line and its correctness checks, on tiny problems.

No timing is asserted: only that every mode runs, reports what it should and
checks what it computes.
"""
import json

import numpy as np
import pytest

import xentfast
from xentfast import _core, bench
from xentfast.bench import cli, loop
from xentfast.bench.run import BOUND_OF
from xentfast.bench.targets import LOOP_SETTING_RATIO_LIMIT, OPTION_RATIO_LIMIT

# torch's own modules warn about their deprecated parts on import
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torch")

FLAGS = ["--shape", "--threads", "--repeat", "--budget", "--dtype", "--options", "--loop",
         "--distributed", "--all", "--sweep", "--rss", "--plot", "--json"]
QUICK = ["--repeat", "1", "--budget", "0"]


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in FLAGS:
        assert flag in text, flag


def test_default_table_runs_and_checks(tmp_path, capsys):
    path = tmp_path / "out.json"
    assert bench.main(["--shape", "64", "10", *QUICK, "--json", str(path)]) == 0
    text = capsys.readouterr().out
    assert "correctness: OK" in text
    out = json.loads(path.read_text())
    assert out["options"] is None and out["loop"] is None
    rows = {r["key"]: r for r in out["core"][0]["results"]}
    assert [m.key for m in bench.core_methods()] == list(rows)
    for key in ("xentfast-out", "xentfast-out-1t", "xentfast-fresh", "xentfast-inplace",
                "xentfast-inplace-1t", "xentfast-loss", "xentfast-loss-1t"):
        assert rows[key]["error"] is None and rows[key]["time"] > 0, key


def test_fused_rows_are_timed_run_for_run_with_their_bound(monkeypatch):
    methods = [bench.method(k) for k in [*BOUND_OF, *sorted(set(BOUND_OF.values()))]]
    # logits at the kernels' streaming threshold (lowered here, so that the
    # test needs no 8 MiB arrays) count as too large to stay cached: each
    # fused row's fraction is of the bound's runs between its own
    monkeypatch.setattr(_core, "STREAMING_BYTES", 64 * 10 * 4)
    report = bench.run_benchmark(64, 10, repeat=1, budget=0, methods=methods)
    rows = {r["key"]: r for r in report["results"]}
    for key, bound in BOUND_OF.items():
        row = rows[key]
        assert row["error"] is None, row["error"]
        assert row["paired_key"] == bound and row["paired_time"] > 0, key
        assert row["of_bound"] == pytest.approx(row["paired_time"] / row["time"]), key
    summary = bench.summarize([report])[0]
    for column, key in (("of_bound", "xentfast-out"), ("of_bound_1t", "xentfast-out-1t"),
                        ("inplace_of_bound", "xentfast-inplace"),
                        ("inplace_of_bound_1t", "xentfast-inplace-1t"),
                        ("fwd_of_bound", "xentfast-loss"), ("fwd_of_bound_1t", "xentfast-loss-1t")):
        assert summary[column] == rows[key]["of_bound"], column
    # cached logits (one element under the threshold): against the bound's
    # own row, measured apart
    monkeypatch.setattr(_core, "STREAMING_BYTES", 64 * 10 * 4 + 1)
    report = bench.run_benchmark(64, 10, repeat=1, budget=0, methods=methods)
    rows = {r["key"]: r for r in report["results"]}
    for key, bound in BOUND_OF.items():
        assert rows[key]["paired_key"] is None and rows[key]["paired_time"] is None, key
        assert rows[key]["of_bound"] == pytest.approx(rows[bound]["time"] / rows[key]["time"])


def test_options_table_says_target_not_issue(capsys):
    assert bench.main(["--options", "--shape", "64", "100", *QUICK]) == 0
    text = capsys.readouterr().out
    assert f"({OPTION_RATIO_LIMIT:.2f})" in text
    for word in ("issue", "Issue", "MISS"):
        assert word not in text


def _fake_inplace_adapter(monkeypatch):
    """An adapter with inplace_backward that writes over its input, as an
    in-place gradient does."""
    xt = pytest.importorskip("xentfast.torch")
    original = xt.cross_entropy

    def cross_entropy(input, target, weight=None, *, inplace_backward=False, **options):
        loss = original(input, target, weight, **options)
        if inplace_backward:
            input.data.fill_(0.0)
        return loss

    monkeypatch.setattr(xt, "cross_entropy", cross_entropy)


def test_inplace_adapter_row_restores_the_logits(monkeypatch):
    _fake_inplace_adapter(monkeypatch)
    problem = bench.make_problem(64, 100)
    logits = problem.x.copy()
    m = bench.method("torch-xentfast-inplace")
    row = bench.measure(m, problem, 3, *bench.expected_result(m, problem))
    assert row["error"] is None, row["error"]
    assert row["runs"] == 3
    assert row["loss_diff"] <= 1e-5 * abs(row["loss"])
    assert row["grad_diff"] is not None and row["grad_diff"] <= 1e-7
    np.testing.assert_array_equal(problem.x, logits)  # the other rows' input untouched


def test_inplace_adapter_row_unavailable_without_the_keyword(monkeypatch):
    xt = pytest.importorskip("xentfast.torch")
    monkeypatch.setattr(xt, "cross_entropy", lambda input, target: None)
    with pytest.raises(bench.Unavailable, match="inplace_backward"):
        bench.method("torch-xentfast-inplace").setup(bench.make_problem(4, 3))


@pytest.mark.parametrize("key", [lp.key for lp in loop.LOOPS if lp.yardstick])
def test_loop_matches_its_yardstick(key):
    """Each xentfast loop, in its own process, ends at its yardstick's loss."""
    if key.startswith("torch"):
        pytest.importorskip("torch")
    loops = {lp.key: lp for lp in loop.LOOPS}
    ours = loop.measure_loop(loops[key], {"OMP_NUM_THREADS": "1"}, repeat=1, budget=0)
    theirs = loop.measure_loop(loops[loops[key].yardstick], {"OMP_NUM_THREADS": "1"},
                               repeat=1, budget=0)
    assert "error" not in ours and "error" not in theirs, (ours, theirs)
    assert ours["runs"] == 1 and ours["time"] > 0
    # 100 steps from W = 0 learn the hidden linear model's labels: well below log(10)
    assert ours["final_loss"] < 0.6 * np.log(loop.LOOP_CLASSES)
    assert ours["final_loss"] == pytest.approx(theirs["final_loss"], rel=loop.LOOP_LOSS_RTOL)


def test_loop_report_marks_a_setting_above_the_target(monkeypatch):
    def cell(t):
        return {"time": t, "final_loss": 0.5, "times": [t]}

    slow = 1.5 * LOOP_SETTING_RATIO_LIMIT
    fake = {"numpy-xentfast": [cell(0.1 * slow), cell(0.1), cell(0.1), cell(0.1)],
            "numpy-softmax": [cell(0.2)] * 4,
            "torch-xentfast": [{"error": "torch not installed"}] * 4,
            "torch-eager": [{"error": "torch not installed"}] * 4}
    calls = []
    settings = [variables for _, variables in loop.LOOP_SETTINGS]

    def measure(lp, variables, **kw):
        calls.append((lp.key, dict(variables)))
        return dict(fake[lp.key][settings.index(variables)])

    monkeypatch.setattr(loop, "measure_loop", measure)
    report = loop.run_loops(repeat=1, budget=0)
    rows = {r["key"]: r for r in report["results"]}
    assert rows["numpy-xentfast"]["worst_x_best"] == pytest.approx(slow)
    assert rows["numpy-xentfast"]["meets_limit"] is False
    assert rows["numpy-softmax"]["meets_limit"] is True
    assert len(rows["torch-xentfast"]["settings"]) == 1  # not installed: not tried again
    assert report["correctness"]["ok"]
    text = loop.format_loop_report(report)
    assert f"above ({LOOP_SETTING_RATIO_LIMIT:.2f})" in text
    assert f"ok ({LOOP_SETTING_RATIO_LIMIT:.2f})" in text
    assert "unavailable: torch not installed" in text
    assert [v for k, v in calls if k == "numpy-xentfast"] == settings + settings[::-1]

    # a final loss away from the yardstick's fails the loop check
    fake["numpy-softmax"] = [dict(cell(0.2), final_loss=0.6)] * 4
    report = loop.run_loops(repeat=1, budget=0)
    assert not report["correctness"]["ok"]
    assert "FAILED" in loop.format_loop_report(report)


def test_each_setting_sets_only_its_variable(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    for _, variables in loop.LOOP_SETTINGS:
        env = loop._setting_environment(variables)
        assert {k: env[k] for k in loop.LOOP_VARIABLES if k in env} == variables


def test_a_registered_mode_gets_its_flag(capsys):
    mode = cli.Mode("echo-mode", "a test mode", lambda ctx: {"shape": ctx.args.shape,
                                                              "correctness": {"ok": False}},
                    lambda report: f"echo {report['shape']}")
    cli.register_mode(mode)
    try:
        with pytest.raises(ValueError, match="echo-mode"):
            cli.register_mode(mode)
        assert bench.main(["--echo-mode", "--shape", "3", "4", *QUICK]) == 1
        assert "echo [3, 4]" in capsys.readouterr().out
    finally:
        del cli.MODES["echo-mode"]


def test_rounds_keep_every_run_and_every_failure():
    first = {"times": [0.3, 0.2], "final_loss": 0.5}
    merged = loop._merge(loop._merge(None, dict(first)), {"times": [0.1], "final_loss": 0.5})
    assert (merged["time"], merged["runs"]) == (0.1, 3)
    crashed = loop._merge(merged, {"error": "exit status -11"})
    assert crashed["time"] == 0.1 and crashed["round_errors"] == ["exit status -11"]
    assert loop._merge({"error": "timed out"}, dict(first))["round_errors"] == ["timed out"]


def test_distributed_mode_runs_and_prints_its_rows(tmp_path, capsys):
    """--distributed starts 2 MPI ranks on a tiny batch and prints its rows:
    the timings, the ratios against the single-process calls, the bytes
    per call beside the logits, the check."""
    from helpers import mpiexec_path
    mpiexec_path()  # skips without mpi4py/mpiexec (fails under XENTFAST_REQUIRE_DISTRIBUTED=1)
    path = tmp_path / "out.json"
    assert bench.main(["--distributed", "--shape", "64", "100", *QUICK,
                       "--json", str(path)]) == 0
    text = capsys.readouterr().out
    for words in ("vocab-parallel, 64 x 50 per rank", "single-process on 64 x 50",
                  "the shard's two passes", "data-parallel, 32 x 100 per rank",
                  "single-process on 32 x 100", "vocab-parallel / single-process on the shard",
                  "communication and agreement", "vocab-parallel loss alone",
                  "data-parallel / single-process on the local rows",
                  "bytes per call and rank", "this rank's logits", "load average",
                  "mpiexec -n 2", "correctness: OK"):
        assert words in text, words
    report = json.loads(path.read_text())["distributed"]
    assert report["correctness"]["ok"]
    for key in ("vocab", "vocab_single", "vocab_passes", "vocab_stats", "vocab_read",
                "vocab_loss", "vocab_single_loss", "data", "data_single"):
        m = report["methods"][key]
        assert 0 < m["best"] <= m["median"] <= m["worst"], (key, m)
    agreement = (8 * 2 + 4) * 8  # distributed.py: 8 fields per rank + 4 shared slots
    vocab, data = report["traffic"]["vocab"], report["traffic"]["data"]
    # vocab: the agreement, then each row's rescaled sum and target logit + 1
    assert vocab == {"collectives": 2, "bytes": agreement + (2 * 64 + 1) * 8,
                     "agreement_bytes": agreement, "logits_bytes": 64 * 50 * 4}, vocab
    # data, a "mean" loss+grad: the agreement with the denominator, then the loss sum
    assert data == {"collectives": 2, "bytes": agreement + 8, "agreement_bytes": agreement,
                    "logits_bytes": 32 * 100 * 4}, data
