"""report.html: one self-contained page per job (inline CSS, SVG and script; nothing fetched).

Summary, loss curve (inline SVG), held-out accuracy, metrics base vs tuned, and the prompt table
with base and tuned answers side by side, failures first, filterable by text and by status. A run
of several jobs also gets a combined page linking each job's page.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from tunespec.report.compare import comparison, prompt_rows
from tunespec.report.document import losses, percent

VERDICTS = {0: ("passed", "ok"), 1: ("failed", "bad"), 2: ("invalid", "bad"), 3: ("below threshold", "bad")}
# Nothing may be fetched: the page's Content-Security-Policy forbids every source but its own inline parts.
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.muted{color:#59636e}.ok{color:#1a7f37}.bad{color:#cf222e}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{border:1px solid #d1d9e0;border-radius:6px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:20px}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #e5e9ee;padding:4px 6px;
text-align:left;vertical-align:top}th{background:#f6f8fa;position:sticky;top:0}
td.num,th.num{text-align:right;white-space:nowrap}td pre{margin:0;white-space:pre-wrap;word-break:break-word;
max-width:32em;font:12px ui-monospace,monospace}
tr.fail td:first-child{border-left:3px solid #cf222e}tr.pass td:first-child{border-left:3px solid #1a7f37}
.filters{display:flex;gap:8px;margin:8px 0}.filters input{flex:1;padding:4px 6px}
svg text{font:11px system-ui,sans-serif;fill:#59636e}
"""

SCRIPT = """
(function(){
  var q=document.getElementById('q'),s=document.getElementById('status'),n=document.getElementById('shown');
  function apply(){
    var text=q.value.toLowerCase(),status=s.value,rows=document.querySelectorAll('#prompts tbody tr'),k=0;
    rows.forEach(function(r){
      var ok=(!text||r.textContent.toLowerCase().indexOf(text)>=0)&&
        (status==='all'||r.dataset.status===status||r.dataset.group===status);
      r.style.display=ok?'':'none';if(ok)k++;
    });
    n.textContent=k+' of '+rows.length+' shown';
  }
  q.addEventListener('input',apply);s.addEventListener('change',apply);apply();
})();
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.2f}"


def loss_svg(points: Sequence[tuple[int, float]], width: int = 640, height: int = 220) -> str:
    """The loss curve as an inline SVG line chart, with its step and loss ranges labelled."""
    if not points:
        return ""
    left, right, top, bottom = 48, 12, 10, 28
    steps = [p[0] for p in points]
    values = [p[1] for p in points]
    x0, x1 = min(steps), max(steps)
    lo, hi = min(values), max(values)
    xspan, yspan = (x1 - x0) or 1, (hi - lo) or 1.0

    def xy(step: int, value: float) -> str:
        x = left + (step - x0) / xspan * (width - left - right)
        y = top + (hi - value) / yspan * (height - top - bottom)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(s, v) for s, v in points)
    return (
        f'<svg id="loss" role="img" aria-label="loss curve" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
        'fill="none" stroke="#d1d9e0"/>'
        f'<polyline points="{line}" fill="none" stroke="#0969da" stroke-width="1.8"/>'
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">{hi:.3f}</text>'
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">{lo:.3f}</text>'
        f'<text x="{left}" y="{height - 8}">step {x0}</text>'
        f'<text x="{width - right}" y="{height - 8}" text-anchor="end">step {x1}</text>'
        "</svg>"
    )


def _card(label: str, value: str, extra: str = "", cls: str = "") -> str:
    return (
        f'<div class="card"><span class="muted">{_e(label)}</span><b class="{cls}">{_e(value)}</b>'
        f'<span class="muted">{_e(extra)}</span></div>'
    )


def _summary(report: Mapping[str, Any]) -> str:
    ev = report.get("evaluation") or {}
    base = report.get("base_evaluation") or {}
    verdict, cls = VERDICTS.get(report.get("exit_code", 1), ("failed", "bad"))
    cards = [_card("result", verdict, f"exit {report.get('exit_code')}", cls)]
    if ev:
        cards.append(
            _card(
                "pass rate",
                percent(ev.get("pass_rate")),
                f"threshold {percent(ev.get('threshold'))}"
                + (f" · base {percent(base.get('pass_rate'))}" if base else ""),
            )
        )
        cards.append(
            _card("weighted score", _num(ev.get("score")), f"base {_num(base.get('score'))}" if base else "")
        )
    if ev.get("accuracy") is not None:
        groups = (ev.get("validation") or {}).get("groups") or {}
        count = sum(g.get("count", 0) for g in groups.values())
        extra = f"{count} example(s)" + (f" · base {percent(base.get('accuracy'))}" if base else "")
        cards.append(
            f'<div class="card" id="accuracy"><span class="muted">held-out accuracy</span>'
            f'<b>{percent(ev["accuracy"])}</b><span class="muted">{_e(extra)}</span></div>'
        )
    hp = (
        (report.get("hyperparameters") or {}).get("resolved")
        or (report.get("hyperparameters") or {}).get("requested")
        or {}
    )
    facts = [
        ("tuned model", report.get("tuned_model")),
        ("state", report.get("state")),
        ("base model", report.get("source_model") or report.get("base_model")),
        ("target", (report.get("target") or {}).get("name")),
        ("examples", report.get("examples")),
        ("hyperparameters", ", ".join(f"{k}={v}" for k, v in hp.items())),
        ("generated", report.get("generated_at")),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts if v not in (None, ""))
    error = f'<p class="bad" id="error">{_e(report["error"])}</p>' if report.get("error") else ""
    return f'<div class="cards">{"".join(cards)}</div>{error}<table class="facts">{rows}</table>'


def _accuracy_table(ev: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    groups = (ev.get("validation") or {}).get("groups") or {}
    if not groups:
        return ""
    base_groups = (base.get("validation") or {}).get("groups") or {}
    names = {"held_out": "held out of training (validation_split)", "dataset": "evaluation.dataset"}
    head = (
        "<tr><th>examples</th><th class=num>count</th><th class=num>tuned</th>"
        + ("<th class=num>base</th><th class=num>delta</th>" if base else "")
        + "</tr>"
    )
    body = ""
    for key, g in groups.items():
        b = base_groups.get(key)
        body += (
            f"<tr><td>{_e(names.get(key, key))}</td><td class=num>{g['count']}</td>"
            f"<td class=num>{percent(g['accuracy'])}</td>"
        )
        if base:
            delta = g["accuracy"] - b["accuracy"] if b else None
            body += (
                f"<td class=num>{percent(b['accuracy']) if b else '-'}</td><td class=num>"
                f"{'' if delta is None else f'{delta * 100:+.0f} pts'}</td>"
            )
        body += "</tr>"
    return f'<h2>Held-out accuracy</h2><table id="accuracy-table">{head}{body}</table>'


def _metrics_table(ev: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    compared = comparison(ev, base) if base else None
    metrics = (compared or {}).get("metrics") or {
        k: {"tuned": v, "base": None, "delta": None} for k, v in (ev.get("metrics") or {}).items()
    }
    if not metrics:
        return ""
    head = (
        "<tr><th>metric</th><th class=num>tuned</th>"
        + ("<th class=num>base</th><th class=num>delta</th>" if base else "")
        + "</tr>"
    )
    body = "".join(
        f"<tr><td>{_e(name)}</td><td class=num>{_num(m['tuned'])}</td>"
        + (f"<td class=num>{_num(m['base'])}</td><td class=num>{_signed(m['delta'])}</td>" if base else "")
        + "</tr>"
        for name, m in metrics.items()
    )
    return f'<h2>Metrics</h2><table id="metrics">{head}{body}</table>'


def _answer(side: Mapping[str, Any] | None) -> str:
    if side is None:
        return "<td>-</td><td class=num>-</td>"
    text = side.get("error") or side.get("output") or ""
    return f"<td><pre>{_e(text)}</pre></td><td class=num>{_num(side.get('score'))}</td>"


def _prompt_table(ev: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    rows = prompt_rows(ev, base or None)
    if not rows:
        return ""
    rows.sort(key=lambda r: bool((r["tuned"] or {}).get("passed")))  # failures first, order kept
    head = (
        "<tr><th>prompt</th><th>input</th><th>expected</th><th>tuned answer</th><th class=num>score</th>"
        + ("<th>base answer</th><th class=num>base</th><th class=num>delta</th>" if base else "")
        + "<th>problem</th></tr>"
    )
    body = ""
    for r in rows:
        passed = bool((r["tuned"] or {}).get("passed"))
        body += (
            f'<tr class="{"pass" if passed else "fail"}" data-status="{"pass" if passed else "fail"}" '
            f'data-group="{_e(r["group"])}"><td>{_e(r["name"])}<br><span class="muted">{_e(r["group"])}'
            f"</span></td><td><pre>{_e(r['input'])}</pre></td><td><pre>{_e(r['expected'] or '')}</pre></td>"
            + _answer(r["tuned"])
            + ((_answer(r["base"]) + f"<td class=num>{_signed(r['delta'])}</td>") if base else "")
            + f"<td>{_e(r['problem'])}</td></tr>"
        )
    filters = (
        '<div class="filters"><input id="q" type="search" placeholder="filter prompts">'
        '<select id="status"><option value="all">all</option><option value="fail">failing</option>'
        '<option value="pass">passing</option><option value="prompt">written prompts</option>'
        '<option value="held_out">held-out examples</option>'
        '<option value="dataset">evaluation dataset</option></select>'
        '<span id="shown" class="muted"></span></div>'
    )
    return (
        f'<h2>Prompts</h2>{filters}<table id="prompts"><thead>{head}</thead>'
        f"<tbody>{body}</tbody></table><script>{SCRIPT}</script>"
    )


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )


def render_html(report: Mapping[str, Any]) -> str:
    """The job's report.html."""
    job = report["job"]["name"]
    ev = report.get("evaluation") or {}
    base = report.get("base_evaluation") or {}
    points = losses(report)
    loss = ""
    if points:
        loss = (
            f"<h2>Loss</h2>{loss_svg(points)}<p class=muted>first {points[0][1]:.4f} at step "
            f"{points[0][0]} → last {points[-1][1]:.4f} at step {points[-1][0]}</p>"
        )
    body = (
        f"<h1>tunespec: {_e(job)}</h1><p class=muted>{_e(report.get('tuned_model'))}</p>"
        + _summary(report)
        + loss
        + (_accuracy_table(ev, base) + _metrics_table(ev, base) + _prompt_table(ev, base) if ev else "")
    )
    return _page(f"tunespec: {job}", body)


def render_combined_html(
    reports: Sequence[Mapping[str, Any]], pages: Sequence[Path | None], path: Path
) -> str:
    """The page of a run of several jobs: one row per job, linking its own report.html."""
    body = ""
    for report, page in zip(reports, pages, strict=True):
        ev = report.get("evaluation") or {}
        base = report.get("base_evaluation") or {}
        verdict, cls = VERDICTS.get(report.get("exit_code", 1), ("failed", "bad"))
        name = _e(report["job"]["name"])
        link = (
            f'<a href="{_e(Path(os.path.relpath(page, path.parent)).as_posix())}">{name}</a>'
            if page
            else name
        )
        body += (
            f'<tr><td>{link}</td><td class="{cls}">{verdict}</td><td>{_e(report.get("tuned_model"))}</td>'
            f"<td class=num>{percent(ev.get('pass_rate')) if ev else '-'}</td>"
            f"<td class=num>{_num(ev.get('score')) if ev else '-'}</td>"
            f"<td class=num>{percent(ev.get('accuracy'))}</td>"
            f"<td class=num>{percent(base.get('accuracy')) if base else '-'}</td></tr>"
        )
    table = (
        '<table id="jobs"><tr><th>job</th><th>result</th><th>tuned model</th><th class=num>pass rate</th>'
        "<th class=num>score</th><th class=num>held-out accuracy</th><th class=num>base accuracy</th></tr>"
        f"{body}</table>"
    )
    return _page("tunespec run", f"<h1>tunespec run: {len(reports)} job(s)</h1>{table}")


def combined_html_path(report_dirs: Sequence[Path]) -> Path | None:
    """Where a run of several jobs writes its combined report.html: beside their report dirs."""
    if len(report_dirs) < 2:
        return None
    if len(set(report_dirs)) > 1:
        return Path(os.path.commonpath([str(d) for d in report_dirs])) / "report.html"
    return report_dirs[0].parent / "report.html"


def write_combined_html(
    reports: Sequence[Mapping[str, Any]], pages: Sequence[Path | None], path: Path
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_combined_html(reports, pages, path), encoding="utf-8")
    return path
