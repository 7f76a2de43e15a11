"""Stored runs as text: the aligned table ``llmos bench`` prints and the Markdown table of ``docs/bench.md``.

Both read the JSON document ``report.build_doc`` writes (``SCHEMA``), so the screen,
the file and the page can never disagree. Fields an older or partial document lacks
are left out rather than failing.
"""

from __future__ import annotations

from typing import Any

#: The layout of the JSON document these functions read and ``report.build_doc`` writes.
SCHEMA = 1


def fmt(v: float | None) -> str:
    """A number with sensible precision: 12,345 · 123 · 12.3 · 1.23 · 0.0123."""
    if v is None:
        return "-"
    if v == 0 or abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def fmt_ratio(x: float) -> str:
    """An advantage: two decimals, or two significant digits when that would print 0.00."""
    return f"{x:.2f}" if x >= 0.01 else f"{x:.2g}"


HEADERS = ("CASE", "WHO", "VALUE", "UNIT", "MEDIAN", "MIN-MAX", "N", "LLMOS x")


def table_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for case in doc["cases"]:
        name = case["name"]
        for i, r in enumerate([case["llmos"], *case["peers"]]):
            label = name if i == 0 else ""
            if r["status"] != "ok":
                rows.append((label, r["who"], f"{r['status']}: {r.get('reason', '')}", "", "", "", "", ""))
                continue
            adv = r.get("llmos_advantage")
            rows.append(
                (
                    label,
                    r["who"],
                    fmt(r["value"]),
                    case["unit"],
                    fmt(r["median"]),
                    f"{fmt(r['min'])}-{fmt(r['max'])}",
                    str(r["n"]),
                    "" if adv is None else fmt_ratio(adv),
                )
            )
    return rows


def format_table(doc: dict[str, Any]) -> str:
    """The results as aligned text, with a header line (date, machine) and a legend."""
    rows = table_rows(doc)
    widths = [len(h) for h in HEADERS]
    for row in rows:
        for i, cell in enumerate(row):
            if not cell.startswith(("skipped:", "error:")):
                widths[i] = max(widths[i], len(cell))
    numeric = {2, 4, 5, 6, 7}

    def line(cells: tuple[str, ...]) -> str:
        if cells[2].startswith(("skipped:", "error:")):
            return f"{cells[0].ljust(widths[0])}  {cells[1].ljust(widths[1])}  {cells[2]}".rstrip()
        out = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(out).rstrip()

    m = doc["machine"]
    s = doc["settings"]
    head = (
        f"llmos bench {doc['date']}  {'quick' if s['quick'] else 'full'} run, {doc['elapsed_s']} s  |  "
        f"{m['nproc']} cores ({m['cpu_model']}), {m['mem_gib']} GiB, Python {m['python']}"
        + (f", Ray {s['ray']}" if s.get("ray") else "")
    )
    out = [head]
    load = doc.get("load_average")
    if load:
        out.append(
            f"1-min load average {load['start']:.1f} before the run, {load['end']:.1f} after (this run included), "
            f"on {m['nproc']} cores"
        )
        if load["start"] > 0.5 * (m["nproc"] or 1):
            out.append(
                "warning: other processes were busy on this machine: absolute numbers are low and noisy; "
                "ratios (contestants take turns) hold better"
            )
    out += ["", line(HEADERS), *(line(r) for r in rows)]
    out += [
        "",
        "VALUE: the case's statistic (median of the samples, or the named percentile); MIN-MAX over N samples.",
        "LLMOS x: llmos's advantage over that peer, measured in this run "
        "(rates: llmos/peer, times: peer/llmos; > 1: llmos ahead).",
    ]
    return "\n".join(out)


def _machine_line(doc: dict[str, Any]) -> str:
    """Date, run kind, machine and load in one sentence; fields an older or partial document lacks are left out."""
    m, s = doc.get("machine") or {}, doc.get("settings") or {}
    load = doc.get("load_average") or {}
    where = [f"{m.get('nproc', '?')} cores" + (f" ({m['cpu_model']})" if m.get("cpu_model") else "")]
    if m.get("mem_gib"):
        where.append(f"{m['mem_gib']} GiB")
    for label, key in (("Python", "python"), ("pyzmq", "pyzmq"), ("torch", "torch")):
        if m.get(key):
            where.append(
                f"{label} {m[key]}" + (f" (libzmq {m['libzmq']})" if key == "pyzmq" and m.get("libzmq") else "")
            )
    if s.get("ray"):
        where.append(f"Ray {s['ray']}")
    run = "quick" if s.get("quick") else "full"
    elapsed = f", {doc['elapsed_s']} s" if doc.get("elapsed_s") is not None else ""
    started = f"; 1-min load average {load['start']:.1f} when it started" if load.get("start") is not None else ""
    return f"Measured {doc.get('date', '(undated)')} ({run} run{elapsed}) on {', '.join(where)}{started}."


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _md_result(r: dict[str, Any]) -> str:
    """One contestant's cell text: its value, or its status and reason."""
    if r.get("status") != "ok" or r.get("value") is None:
        reason = r.get("reason") or ""
        return _cell(f"{r.get('status', 'missing')}: {reason}".rstrip(": "))
    return fmt(r["value"])


def format_markdown(doc: dict[str, Any]) -> str:
    """The results as a Markdown table (``docs/bench.md``'s), one row per case.

    ``python -m llmos_actors.bench.report docs/bench.json --markdown`` prints it for a
    stored run; the header line carries that run's date, machine and load, so a stored
    result never reads as a live one.
    """
    lines = [_machine_line(doc), ""]
    load, nproc = (doc.get("load_average") or {}).get("start"), (doc.get("machine") or {}).get("nproc") or 1
    if load is not None and load > 0.5 * nproc:
        lines += [
            "Other processes were busy on the machine: absolute numbers are low and noisy; ratios hold better.",
            "",
        ]
    lines += [
        "| case | unit | llmos: median (min-max) | peers in the same run: median (llmos advantage) |",
        "|---|---|---:|---|",
    ]
    for case in doc.get("cases") or []:
        ours = case.get("llmos") or {}
        name, unit = case.get("name", "?"), case.get("unit", "")
        if ours.get("status") != "ok" or ours.get("value") is None:
            lines.append(f"| `{name}` | {unit} | {_md_result(ours)} | |")
            continue
        stat = "" if case.get("stat", "median") == "median" else f" {case['stat']}"
        spread = f" ({fmt(ours['min'])}-{fmt(ours['max'])})" if "min" in ours and "max" in ours else ""
        value = f"**{fmt(ours['value'])}**{stat}{spread}"
        peers = []
        for p in case.get("peers") or []:
            adv = p.get("llmos_advantage")
            text = _md_result(p)
            if p.get("status") == "ok":
                peers.append(
                    f"{_cell(p.get('who', '?'))} {text}" + (f" ({fmt_ratio(adv)}x)" if adv is not None else "")
                )
            else:
                peers.append(f"{_cell(p.get('who', '?'))}: {text}")
        lines.append(f"| `{name}` | {unit} | {value} | {' · '.join(peers) or '-'} |")
    return "\n".join(lines)
