"""The text tables: one per problem, and the summary of several shapes."""
from __future__ import annotations

import math

import numpy as np

from .timing import ORACLE_ROWS

# What a reader of an "unavailable: <module> not installed" row needs to know.
INSTALL_NOTES = {"torch": "PyTorch is optional; any CPU build works"}


def _three_digits(v):
    return f"{v:.{max(0, 2 - math.floor(math.log10(v)))}f}" if v > 0 else f"{v:g}"


def _with_unit(seconds):
    if seconds < 1e-3:
        return f"{_three_digits(seconds * 1e6)} us"
    if seconds < 1:
        return f"{_three_digits(seconds * 1e3)} ms"
    return f"{_three_digits(seconds)} s"


def _diff(v):
    return "0" if v == 0 else f"{v:.1e}"


def _mib(v):
    return f"{v:.0f}" if v >= 9.95 else f"{v:.1f}"


def _render(headers, lines, notes_width=None):
    """Columns: the first left-aligned, the others right-aligned.  A line is a
    list of cells, or a (first cell, message) tuple spanning the others."""
    widths = [len(h) for h in headers]
    for line in lines:
        if isinstance(line, list):
            widths = [max(w, len(cell)) for w, cell in zip(widths, line)]
        else:
            widths[0] = max(widths[0], len(line[0]))
    out = ["  ".join([headers[0].ljust(widths[0])]
                     + [h.rjust(w) for h, w in zip(headers[1:], widths[1:])]).rstrip(),
           "  ".join("-" * w for w in widths)]
    room = sum(w + 2 for w in widths[1:])
    for line in lines:
        if isinstance(line, list):
            out.append("  ".join([line[0].ljust(widths[0])]
                                 + [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])]))
        else:
            message = line[1] if len(line[1]) <= room else line[1][:room - 3] + "..."
            out.append(f"{line[0].ljust(widths[0])}  {message}")
    return out


def _header(info):
    threads = info["threads"]
    return [
        f"xentfast {info['xentfast']}, backend {info['backend']}, "
        f"{threads} thread{'s' if threads != 1 else ''}",
        f"machine: {info['cpu']} ({info['machine']}, {info['cores']} cores), "
        f"numpy {info['numpy']}, python {info['python']}",
    ]


def format_report(report: dict) -> str:
    """The header, table and correctness lines of a :func:`run_benchmark` result."""
    info = report["info"]
    n, c = info["shape"]
    itemsize = np.dtype(info["dtype"]).itemsize
    options = report["group"] == "options"
    rows = report["results"]
    fused = next((r["time"] for r in rows if r["key"] == "xentfast-out"), None)
    micro = fused is not None and fused < 1e-3
    scale, unit = (1e6, "us") if micro else (1e3, "ms")
    runs = (f"best of {info['repeat']} runs" if not info["budget"] else
            f"best of the runs in ~{info['budget']:g} s (>= {info['repeat']}; 2 if > 1 s, "
            f"1 if > 5 s)")
    lines = _header(info) + [
        f"problem: {n} x {c} {info['dtype']} ({n * c / 1e6:.3g} M elements, "
        f"{n * c * itemsize / 2**20:.3g} MiB), {runs} after a warm-up, {info['date']}",
        "",
    ]
    columns = [(f"time {unit}", lambda r: _three_digits(r["time"] * scale)),
               ("G el/s", lambda r: _three_digits(r["gelem_per_s"]))]
    if options:
        columns += [
            ("x plain", lambda r: f"{r['speedup']:.2f}"),
            ("x loss", lambda r: f"{r['x_loss']:.2f}" if r["x_loss"] is not None else "-"),
            ("target", lambda r: "-" if r["limit"] is None else
             f"{'ok' if r['meets_limit'] else 'above'} ({r['limit']:.2f})"),
            ("oracle rel", lambda r: f"{r['oracle']['loss_rel_error']:.1e}"
             if "loss_rel_error" in r.get("oracle", {}) else "-"),
        ]
    else:
        columns += [("of bound", lambda r: f"{r['of_bound']:.2f}"),
                    ("x copy", lambda r: f"{r['x_copy']:.2f}"),
                    ("speed-up", lambda r: f"{r['speedup']:.2f}")]
    columns += [("|dloss|", lambda r: _diff(r["loss_diff"])),
                ("max|dgrad|", lambda r: _diff(r["grad_diff"])),
                ("runs", lambda r: str(r["runs"]))]
    if any("rss" in r for r in rows):
        columns.append(("+RSS MiB", lambda r: _mib(r["rss"]["extra_mib"])
                        if "extra_mib" in r.get("rss", {}) else
                        "failed" if "rss" in r else "-"))

    def cell(fmt, r):
        try:
            return fmt(r)
        except (TypeError, KeyError):  # a None
            return "-"

    table = []
    for r in rows:
        if r["error"] is not None:
            table.append((r["name"], f"unavailable: {r['error']}"))
        else:
            table.append([r["name"]] + [cell(fmt, r) for _, fmt in columns])
    lines += _render(["method"] + [h for h, _ in columns], table)
    lines.append("")
    if options:
        lines.append("x plain = time / time of xentfast's plain loss+grad (out=), for a row with a "
                     "target the best of plain runs")
        lines.append("  interleaved with its own; x loss = time / time of its plain loss only;")
        lines.append("target: the most x plain may be ('above' when it is over); oracle rel: "
                     f"relative loss error against the float64 oracle, first {ORACLE_ROWS} rows;")
        lines.append("|dloss|, max|dgrad|: PyTorch rows against the xentfast row with the same "
                     "option, plain rows against the plain loss+grad.")
    else:
        lines.append("of bound = the matching bound's time / time (1 = at the machine's bound: "
                     "read + streaming write for loss+grad,")
        lines.append("  read + write in place for out=logits, read for the loss alone);")
        lines.append("x copy = time / np.multiply copy time; speed-up = time / time of xentfast "
                     "loss+grad (out=);")
        if report["loss"] is not None:
            lines.append(f"|dloss|, max|dgrad|: distance from xentfast's loss "
                         f"({report['loss']:.7g}) and gradient.")
    if any("rss" in r for r in rows):
        lines.append(f"+RSS MiB: peak RSS of a process running the method {info['rss_calls']} "
                     f"times minus its RSS with the inputs built ({info['inputs_mib']:.4g} MiB, "
                     f"logits {n * c * itemsize / 2**20:.4g} MiB).")
        failed = [f"{r['key']}: {r['rss']['error']}" for r in rows
                  if "error" in r.get("rss", {})]
        lines.extend(f"  RSS not measured for {f}" for f in failed)
    lines.extend(f"note: {note}." for note in report["notes"])
    lines.extend(f"note: {note}." for module, note in INSTALL_NOTES.items()
                 if any((r["error"] or "").startswith(f"{module} not installed") for r in rows))
    ch = report["correctness"]
    if ch["rows"] is not None:
        lines.append(
            f"oracle check, first {ch['rows']} rows: xentfast loss {ch['loss']:.9g}, float64 "
            f"xentfast.reference {ch['oracle_loss']:.9g},")
        lines.append(
            f"  relative error {ch['loss_rel_error']:.1e} (loss only "
            f"{ch['loss_only_rel_error']:.1e}), gradient {ch['grad_rel_error']:.1e} (of its "
            f"max); tolerance {ch['tolerance']:.0e}")
    lines.append("correctness: OK" if ch["ok"] else
                 "correctness: FAILED " + "\n  ".join(ch["failures"]))
    return "\n".join(lines)


_SUMMARY_COLUMNS = (  # header, key, format
    ("fused time", "time", _with_unit),
    ("G el/s", "gelem_per_s", _three_digits),
    ("of bound", "of_bound", lambda v: f"{v:.2f}"),
    ("1t", "of_bound_1t", lambda v: f"{v:.2f}"),
    ("in-place of bound", "inplace_of_bound", lambda v: f"{v:.2f}"),
    ("1t", "inplace_of_bound_1t", lambda v: f"{v:.2f}"),
    ("fwd of bound", "fwd_of_bound", lambda v: f"{v:.2f}"),
    ("1t", "fwd_of_bound_1t", lambda v: f"{v:.2f}"),
    ("x copy", "x_copy", lambda v: f"{v:.2f}"),
    ("in-place x copy", "inplace_x_copy", lambda v: f"{v:.2f}"),
    ("fwd x max", "fwd_x_max", lambda v: f"{v:.2f}"),
    ("1->{T} threads", "thread_speedup", lambda v: f"{v:.2f}"),
    ("best peer G el/s", "best_peer_gelem_per_s", _three_digits),
    ("best peer", "best_peer", str),
    ("vs eager", "vs_eager", lambda v: f"{v:.1f}"),
    ("vs compile", "vs_compile", lambda v: f"{v:.1f}"),
)


def format_summary(summary: list, info: dict) -> str:
    """The ``--all`` summary: one line per shape; a missed target is marked ``!``."""
    threads = info["threads"]
    lines = ["summary: " + _header(info)[0] + f", {info['date']}", _header(info)[1], ""]
    headers = ["shape"] + [h.replace("{T}", str(threads)) for h, _, _ in _SUMMARY_COLUMNS]
    table = []
    for s in summary:
        n, c = s["shape"]
        cells = [f"{n}x{c}" + ("" if s["correct"] else " (WRONG)")]
        for _, key, fmt in _SUMMARY_COLUMNS:
            v = s[key]
            cells.append(("-" if v is None else fmt(v)) + ("!" if key in s["missed"] else ""))
        table.append(cells)
    lines += _render(headers, table)
    lines += [
        "",
        "fused = xentfast loss+grad into a reused buffer (out=); of bound = the time of a read "
        "+ streaming write of x / fused time",
        "(in-place: read + write in place / out=logits; fwd: read / loss only; 1t: the "
        "column before, both on one thread); x copy = fused / np.multiply(x, 2, out=y);",
        "in-place = out=logits; fwd x max = loss-only time / np.max(x); 1->T threads = "
        "fused time on 1 thread / on T;",
        "best peer among NumPy, PyTorch eager, torch.compile, JAX, scikit-learn; vs eager, "
        "vs compile = their time / fused time.",
    ]
    missed = []
    for s in summary:
        n, c = s["shape"]
        for col in s["missed"]:
            op, want = s["targets"][col]
            got = s[col]
            shown = "-" if got is None else _with_unit(got) if col == "time" else f"{got:.3g}"
            wanted = _with_unit(want) if col == "time" else f"{want:g}"
            missed.append(f"{n}x{c} {col} {shown} (target {op} {wanted})")
    if missed:
        lines.append("! = misses its target (xentfast.bench.targets): " + "; ".join(missed)
                     + ".")
    else:
        lines.append("every target shown is met (xentfast.bench.targets).")
    wrong = ["{}x{}".format(*s["shape"]) for s in summary if not s["correct"]]
    if wrong:
        lines.append("correctness FAILED (see the shape's table) on: " + ", ".join(wrong) + ".")
    return "\n".join(lines)

