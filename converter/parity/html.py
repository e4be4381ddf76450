"""The verification report as one self-contained HTML file: no scripts, no network, plots as inline SVG."""
from __future__ import annotations

import html
import math
from typing import Any, Sequence

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#1d2330;background:#fff;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
.badge{display:inline-block;padding:3px 12px;border-radius:12px;color:#fff;font-weight:600;font-size:14px;
vertical-align:middle;margin-left:8px}.pass{background:#1f8a4c}.fail{background:#c62f2f}
table{border-collapse:collapse;margin:6px 0;font-size:13px}th,td{border:1px solid #dde2ea;padding:4px 8px;text-align:left}
th{background:#f3f5f9}td.num{text-align:right;font-variant-numeric:tabular-nums;font-family:ui-monospace,monospace}
tr.bad td{background:#fdecec}.muted{color:#6b7385}pre{background:#f3f5f9;padding:10px;border-radius:6px;
overflow-x:auto;white-space:pre-wrap;word-break:break-all}.grid{display:flex;flex-wrap:wrap;gap:16px}
.card{border:1px solid #dde2ea;border-radius:8px;padding:8px 12px}.callout{border-left:4px solid #c62f2f;
background:#fdf3f3;padding:8px 12px;margin:8px 0}.ok{border-left-color:#1f8a4c;background:#f1faf4}
svg text{font:11px system-ui,sans-serif;fill:#3b4252}
"""


def render_html(report: Any) -> str:
    """The whole page for one ``VerifyReport``."""
    e = html.escape
    verdict = "PASSED" if report.passed else "FAILED"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>crossport verify: {verdict}</title><style>{_CSS}</style></head><body>",
        f"<h1>crossport verify <span class='badge {'pass' if report.passed else 'fail'}'>{verdict}</span></h1>",
        f"<div class='muted'>candidate <b>{e(report.candidate.path)}</b> ({e(report.candidate.format)}) against "
        + (f"golden files <b>{e(str(report.golden))}</b>" if report.golden else
           f"<b>{e(report.reference.path)}</b> ({e(report.reference.format)})")
        + f" &middot; {e(_mode())}</div>",
    ]
    first = report.first_divergent
    if report.hop.error:
        parts.append(f"<div class='callout'>error: {e(report.hop.error)}</div>")
    if first is not None:
        parts.append(f"<div class='callout'>First divergent layer: <b>{e(first.name)}</b> "
                     f"(layer {first.index + 1} in execution order), max abs error {first.max_abs_error:.3e}, "
                     f"atol needed {first.atol_needed:.1e}</div>")
    elif report.passed:
        parts.append("<div class='callout ok'>Every output is within tolerance on every input set.</div>")
    parts += ["<h2>Route</h2>", _route_svg(_route(report))]
    parts += ["<h2>Outputs</h2>", _outputs_table(report)]
    parts += ["<h2>Error distribution per output</h2>", "<div class='grid'>"]
    for h in report.histograms:
        tol = report.per_output_tolerance.get(h["name"], (report.tolerance.atol, report.tolerance.rtol))[0]
        parts.append(f"<div class='card'><b>{e(h['name'])}</b><br>{_histogram_svg(h, tol)}</div>")
    parts.append("</div>")
    parts += ["<h2>Per-layer error along depth</h2>", _layers_section(report)]
    parts += ["<h2>Inputs</h2>", _inputs_table(report)]
    parts += ["<h2>Reproduce</h2>", f"<pre>{e(report.command or _fallback_command(report))}</pre>"]
    parts += ["<h2>Versions</h2>", _kv_table(report.versions)]
    if report.notes or report.golden_changes:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li>changed since the golden files: {e(c)}</li>" for c in report.golden_changes]
        parts += [f"<li>{e(n)}</li>" for n in report.notes]
        parts.append("</ul>")
    parts.append(f"<p class='muted'>crossport.verify schema v1 &middot; timings: "
                 + ", ".join(f"{e(k)} {v:.1f}s" for k, v in report.timings.items()) + "</p></body></html>")
    return "\n".join(parts)


def _mode() -> str:
    from converter.reporting import MODE

    return MODE


def _route(report: Any) -> list[str]:
    if report.route:
        steps = list(report.route)
        if report.candidate.format not in steps[-1]:
            steps.append(report.candidate.format)
        return steps
    ref = f"golden ({report.reference.format})" if report.golden else report.reference.runner
    return [ref, report.candidate.runner]


def _route_svg(steps: Sequence[str]) -> str:
    box_w, gap, h = 170, 46, 44
    width = len(steps) * box_w + (len(steps) - 1) * gap + 4
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{h + 8}' role='img' "
           f"aria-label='route'>",
           "<defs><marker id='arr' markerWidth='8' markerHeight='8' refX='7' refY='4' orient='auto'>"
           "<path d='M0,0 L8,4 L0,8 z' fill='#6b7385'/></marker></defs>"]
    for k, step in enumerate(steps):
        x = 2 + k * (box_w + gap)
        out.append(f"<rect x='{x}' y='4' width='{box_w}' height='{h}' rx='8' fill='#eef2fa' stroke='#8795b0'/>")
        out.append(f"<text x='{x + box_w / 2}' y='{4 + h / 2 + 4}' text-anchor='middle'>"
                   f"{html.escape(step[:28])}</text>")
        if k:
            out.append(f"<line x1='{x - gap + 2}' y1='{4 + h / 2}' x2='{x - 3}' y2='{4 + h / 2}' stroke='#6b7385' "
                       "stroke-width='2' marker-end='url(#arr)'/>")
    out.append("</svg>")
    return "".join(out)


def _outputs_table(report: Any) -> str:
    e = html.escape
    rows = ["<table><tr><th>output</th><th>shape</th><th>max abs</th><th>max rel</th><th>mismatches</th>"
            "<th>cosine</th><th>worst index</th><th>atol / rtol</th><th>atol needed</th><th>result</th></tr>"]
    for o in report.hop.outputs:
        rows.append(
            f"<tr class='{'' if o.passed else 'bad'}'><td>{e(o.name)}</td><td>{list(o.shape)}</td>"
            f"<td class='num'>{o.max_abs_error:.3e}</td><td class='num'>{o.max_rel_error:.3e}</td>"
            f"<td class='num'>{o.mismatches}/{o.total}</td><td class='num'>{o.cosine_similarity:.6f}</td>"
            f"<td>{list(o.worst_index)}</td><td class='num'>{o.atol:g} / {o.rtol:g}</td>"
            f"<td class='num'>{o.atol_needed:.1e}</td><td>{'ok' if o.passed else 'FAIL'}"
            + (f" <span class='muted'>{e(o.note)}</span>" if o.note else "") + "</td></tr>")
    rows.append("</table>")
    sets = report.hop.per_set
    if sets:
        rows.append("<table><tr><th>input set</th><th>result</th><th>max abs error</th></tr>")
        rows += [f"<tr class='{'' if ok else 'bad'}'><td>{e(l)}</td><td>{'ok' if ok else 'FAIL'}</td>"
                 f"<td class='num'>{err:.3e}</td></tr>" for l, ok, err in sets]
        rows.append("</table>")
    return "".join(rows)


def _histogram_svg(h: dict, atol: float) -> str:
    w, ht, left, bottom = 420, 190, 44, 34
    counts, edges = h.get("counts", []), h.get("log10_edges", [])
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{ht}' role='img' "
           f"aria-label='error histogram'>"]
    if not counts:
        out.append(f"<text x='{w / 2}' y='{ht / 2}' text-anchor='middle'>no non-zero errors "
                   f"({h.get('zeros', 0)} exact matches)</text></svg>")
        return "".join(out)
    lo, hi = edges[0], edges[-1]
    top = max(counts) or 1
    pw, ph = w - left - 10, ht - bottom - 10
    bw = pw / len(counts)
    for k, c in enumerate(counts):
        bh = ph * (math.log10(c + 1) / math.log10(top + 1))
        mid = (edges[k] + edges[k + 1]) / 2
        color = "#c62f2f" if 10 ** mid > atol else "#4c78a8"
        out.append(f"<rect x='{left + k * bw:.1f}' y='{10 + ph - bh:.1f}' width='{max(bw - 1, 1):.1f}' "
                   f"height='{bh:.1f}' fill='{color}'><title>10^{edges[k]:.2f}..10^{edges[k + 1]:.2f}: {c}</title>"
                   "</rect>")
    out.append(f"<line x1='{left}' y1='{10 + ph}' x2='{left + pw}' y2='{10 + ph}' stroke='#3b4252'/>")
    out.append(f"<line x1='{left}' y1='10' x2='{left}' y2='{10 + ph}' stroke='#3b4252'/>")
    for tick in range(int(math.ceil(lo)), int(math.floor(hi)) + 1):
        x = left + pw * (tick - lo) / (hi - lo)
        out.append(f"<line x1='{x:.1f}' y1='{10 + ph}' x2='{x:.1f}' y2='{14 + ph}' stroke='#3b4252'/>"
                   f"<text x='{x:.1f}' y='{26 + ph}' text-anchor='middle'>1e{tick}</text>")
    if atol > 0 and lo <= math.log10(atol) <= hi:
        x = left + pw * (math.log10(atol) - lo) / (hi - lo)
        anchor, dx = ("end", -3) if x > left + pw * 0.8 else ("start", 3)
        out.append(f"<line x1='{x:.1f}' y1='10' x2='{x:.1f}' y2='{10 + ph}' stroke='#c62f2f' stroke-dasharray='4 3'/>"
                   f"<text x='{x + dx:.1f}' y='20' text-anchor='{anchor}' fill='#c62f2f'>atol</text>")
    out.append(f"<text x='{left + pw / 2}' y='{ht - 2}' text-anchor='middle'>|candidate - reference| "
               f"(log scale); exact matches: {h.get('zeros', 0)}</text>")
    out.append(f"<text x='12' y='{10 + ph / 2}' text-anchor='middle' transform='rotate(-90 12 {10 + ph / 2})'>"
               f"count (log)</text></svg>")
    return "".join(out)


def _layers_section(report: Any) -> str:
    e = html.escape
    prof = report.layers
    if prof is None:
        return ("<p class='muted'>Not computed: the outputs matched (pass --layers for a per-layer profile), or the "
                "reference is golden files.</p>")
    if not prof.layers:
        return f"<p class='muted'>{e(prof.note or 'no comparable layers')}</p>"
    svg = _layers_svg(prof.layers, report.tolerance.atol, prof.first_divergent)
    rows = ["<details><summary>per-layer table</summary><table><tr><th>#</th><th>layer</th><th>shape</th>"
            "<th>max abs</th><th>max rel</th><th>atol needed</th><th>result</th></tr>"]
    for l in prof.layers:
        rows.append(f"<tr class='{'' if l.passed else 'bad'}'><td>{l.index + 1}</td><td>{e(l.name)}</td>"
                    f"<td>{list(l.shape)}</td><td class='num'>{l.max_abs_error:.3e}</td>"
                    f"<td class='num'>{l.max_rel_error:.3e}</td><td class='num'>{l.atol_needed:.1e}</td>"
                    f"<td>{'ok' if l.passed else 'FAIL'} <span class='muted'>{e(l.note)}</span></td></tr>")
    rows.append("</table></details>")
    return svg + "".join(rows)


def _layers_svg(layers: Sequence[Any], atol: float, first: Any) -> str:
    w, ht, left, bottom = 1040, 290, 56, 116
    vals = [l.max_abs_error for l in layers]
    finite = [v for v in vals if isinstance(v, float) and math.isfinite(v) and v > 0]
    lo = math.floor(math.log10(min(finite + [atol]))) if finite else -8
    hi = math.ceil(math.log10(max(finite + [atol * 10]))) if finite else 0
    hi = max(hi, lo + 1)
    pw, ph = w - left - 10, ht - bottom - 10
    n = len(layers)

    def y(v: float) -> float:
        if not (isinstance(v, float) and math.isfinite(v)) or v <= 0:
            return 10 + ph
        return 10 + ph - ph * (math.log10(v) - lo) / (hi - lo)

    def x(k: int) -> float:
        return left + (pw * (k + 0.5) / n)

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{ht}' role='img' "
           "aria-label='per-layer max error'>"]
    for tick in range(lo, hi + 1):
        ty = 10 + ph - ph * (tick - lo) / (hi - lo)
        out.append(f"<line x1='{left}' y1='{ty:.1f}' x2='{left + pw}' y2='{ty:.1f}' stroke='#eceff4'/>"
                   f"<text x='{left - 4}' y='{ty + 4:.1f}' text-anchor='end'>1e{tick}</text>")
    ty = y(atol)
    out.append(f"<line x1='{left}' y1='{ty:.1f}' x2='{left + pw}' y2='{ty:.1f}' stroke='#c62f2f' "
               f"stroke-dasharray='5 4'/><text x='{left + pw - 2}' y='{ty - 4:.1f}' text-anchor='end' "
               f"fill='#c62f2f'>atol {atol:g}</text>")
    pts = " ".join(f"{x(k):.1f},{y(v):.1f}" for k, v in enumerate(vals))
    out.append(f"<polyline points='{pts}' fill='none' stroke='#4c78a8' stroke-width='1.5'/>")
    step = max(1, math.ceil(n / 32))
    for k, l in enumerate(layers):
        bad = not l.passed
        r = 5 if first is not None and l.index == first.index else 3
        out.append(f"<circle cx='{x(k):.1f}' cy='{y(vals[k]):.1f}' r='{r}' fill='{'#c62f2f' if bad else '#4c78a8'}'>"
                   f"<title>{html.escape(l.name)}: {vals[k]:.3e}</title></circle>")
        if k % step == 0 or bad:
            out.append(f"<text x='{x(k):.1f}' y='{16 + ph}' text-anchor='end' "
                       f"transform='rotate(-55 {x(k):.1f} {16 + ph})'>{html.escape(l.name[-26:])}</text>")
    out.append(f"<text x='14' y='{10 + ph / 2}' text-anchor='middle' transform='rotate(-90 14 {10 + ph / 2})'>"
               "max abs error</text></svg>")
    return "".join(out)


def _inputs_table(report: Any) -> str:
    e = html.escape
    rows = ["<table><tr><th>tensor</th><th>shape (reference)</th><th>dtype</th><th>reference layout</th>"
            "<th>candidate layout</th><th>layout from</th></tr>"]
    for kind, items in (("input", report.inputs), ("output", report.outputs)):
        rows += [f"<tr><td>{kind} {e(t.name)}</td><td>{list(t.shape)}</td><td>{e(t.dtype)}</td>"
                 f"<td>{e(t.reference_layout)}</td><td>{e(t.candidate_layout)}</td><td>{e(t.layout_from)}</td></tr>"
                 for t in items]
    rows.append("</table><table><tr><th>input set</th><th>seed</th><th>distribution</th><th>shapes</th></tr>")
    rows += [f"<tr><td>{e(s['label'])}</td><td>{s['seed']}</td><td>{e(s['distribution'])}</td>"
             f"<td>{e(str(s['shapes']))}</td></tr>" for s in report.input_sets]
    rows.append("</table>")
    return "".join(rows)


def _kv_table(d: dict) -> str:
    e = html.escape
    return "<table>" + "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in d.items()) + "</table>"


def _fallback_command(report: Any) -> str:
    if report.golden:
        return f"crossport verify {report.candidate.path} --golden {report.golden}"
    return f"crossport verify {report.reference.path} {report.candidate.path}"
