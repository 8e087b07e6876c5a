"""``mlscale report``: every result JSON of a directory as one static HTML page.

Reads the bench schema (see :mod:`mlscale.bench.results`) and the demo's own
shape (name, params, metrics, rounds, machine); a section a document lacks is
simply not shown. For a document without ``charts``, charts are derived from its
``rounds`` (throughput, latency percentiles) and its ``*_over_*`` metrics (ratios
vs baselines).

Verdicts are recomputed from value/op/target, never taken from the file's
``passed``. The page is self-contained: inline CSS and SVG, no script, no
external URL. Loading (:func:`load_results`) is the only I/O besides writing;
:func:`render_page` is a pure function of the loaded documents.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any, Final, cast

from ..bench.results import Bar, Chart, Group, Op, Verdict
from ..errors import MlscaleError
from .svg import chart_from_dict, format_number, render_chart

__all__ = [
    "Check",
    "Loaded",
    "Skipped",
    "checks_of",
    "derived_charts",
    "flatten",
    "load_results",
    "render_page",
    "render_report",
    "write_report",
]

# Top-level keys with a section of their own; any other key is listed under "Other fields".
KNOWN_KEYS: Final = frozenset(
    {
        "name",
        "title",
        "started_at",
        "duration_s",
        "quick",
        "params",
        "metrics",
        "gates",
        "goals",
        "charts",
        "notes",
        "machine",
        "rounds",
    }
)
OPS: Final = ("<=", ">=")
PERCENTILE: Final = re.compile(r"^p(\d+(?:\.\d+)?)$")
CHART_PX: Final = 1000  # the page's content width: charts are drawn at their own scale
TWO_COLUMNS_FROM: Final = 14  # rows; longer key/value tables are split in two columns


@dataclass(frozen=True, slots=True)
class Loaded:
    """A result document and the file it came from."""

    path: Path
    doc: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.doc["name"])


@dataclass(frozen=True, slots=True)
class Skipped:
    """A ``*.json`` file that is not a result, and why."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class Check:
    """A gate or goal as the report shows it; ``passed`` recomputed, ``stored`` as filed."""

    kind: str  # "gate" or "goal"
    name: str
    value: float
    op: str
    target: float
    unit: str
    passed: bool
    stored: bool | None


# -- loading ----------------------------------------------------------------------------


def _order(item: Loaded) -> tuple[bool, str, str]:
    return (item.name != "demo", item.name, item.path.name)


def load_results(results_dir: Path) -> tuple[list[Loaded], list[Skipped]]:
    """Every ``*.json`` of ``results_dir``: (results, demo first then by name; skipped files)."""
    results: list[Loaded] = []
    skipped: list[Skipped] = []
    for path in sorted(results_dir.glob("*.json")):
        if not path.is_file():
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            skipped.append(Skipped(path, f"unreadable: {exc.strerror or exc}"))
            continue
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            skipped.append(Skipped(path, f"not valid JSON: {exc}"))
            continue
        if not isinstance(doc, dict):
            skipped.append(Skipped(path, f"not a JSON object but a {type(doc).__name__}"))
        elif not isinstance(doc.get("name"), str) or not doc["name"]:
            skipped.append(Skipped(path, 'no "name": not a result document'))
        else:
            results.append(Loaded(path, doc))
    results.sort(key=_order)
    return results, skipped


# -- figures ----------------------------------------------------------------------------


def _num(x: Any) -> float:
    """A JSON number as float; anything else as NaN."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return math.nan
    return float(x)


def checks_of(doc: Mapping[str, Any]) -> list[Check]:
    """The document's gates then goals, each verdict recomputed from value, op and target."""
    checks: list[Check] = []
    for kind, key in (("gate", "gates"), ("goal", "goals")):
        entries = doc.get(key)
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, Mapping):
                continue
            value, target = _num(entry.get("value")), _num(entry.get("target"))
            op = str(entry.get("op", ""))
            # An op the schema does not know decides nothing: such a check fails.
            passed = op in OPS and Verdict("", value, cast(Op, op), target).passed
            stored = entry.get("passed")
            checks.append(
                Check(
                    kind=kind,
                    name=str(entry.get("name", "?")),
                    value=value,
                    op=op,
                    target=target,
                    unit=str(entry.get("unit") or ""),
                    passed=passed,
                    stored=stored if isinstance(stored, bool) else None,
                )
            )
    return checks


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) pairs of nested dicts; lists of scalars stay whole, others indexed."""
    if isinstance(obj, Mapping):
        if not obj and prefix:
            return [(prefix, "{}")]
        pairs: list[tuple[str, Any]] = []
        for key, value in obj.items():
            pairs += flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return pairs
    if isinstance(obj, list) and any(isinstance(x, Mapping | list) for x in obj):
        pairs = []
        for i, item in enumerate(obj):
            pairs += flatten(item, f"{prefix}[{i}]")
        return pairs
    return [(prefix, obj)]


def _cell(value: Any) -> str:
    """A value as table text (not yet escaped)."""
    if isinstance(value, list):
        return ", ".join(format_number(v) for v in value) if value else "[]"
    return format_number(value)


def _spread(values: Iterable[float]) -> Bar | None:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return None
    return Bar("", statistics.median(vals), min(vals), max(vals))


def _round_lists(doc: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    """``rounds`` as {variant: [round dict, ...]}, malformed entries dropped."""
    rounds = doc.get("rounds")
    if not isinstance(rounds, Mapping):
        return {}
    out: dict[str, list[Mapping[str, Any]]] = {}
    for variant, rs in rounds.items():
        if isinstance(rs, list):
            rows = [r for r in rs if isinstance(r, Mapping)]
            if rows:
                out[str(variant)] = rows
    return out


def _percentile(key: str) -> float:
    match = PERCENTILE.match(key)
    return float(match.group(1)) if match else math.inf


def derived_charts(doc: Mapping[str, Any]) -> list[Chart]:
    """Charts for a document that carries none: from its rounds and ratio metrics.

    Throughput per variant (median of rounds' ``per_s``, min..max), latency
    percentiles per variant (median of rounds' ``latency_ms.pNN``, min..max), and
    every ``*_over_*`` metric against parity (1×).
    """
    charts: list[Chart] = []
    rounds = _round_lists(doc)

    throughput: list[Group] = []
    for variant, rs in rounds.items():
        spread = _spread(_num(r.get("per_s")) for r in rs)
        if spread is not None:
            bar = Bar("median of rounds", spread.value, spread.low, spread.high)
            throughput.append(Group(variant, (bar,)))
    if throughput:
        title = "Throughput per variant (median of rounds, whiskers min..max)"
        charts.append(Chart(title, "ops/s", tuple(throughput)))

    latency: list[Group] = []
    for variant, rs in rounds.items():
        lat = [r.get("latency_ms") for r in rs]
        dicts = [d for d in lat if isinstance(d, Mapping)]
        keys = {k for d in dicts for k in d if PERCENTILE.match(str(k))}
        bars: list[Bar] = []
        for key in sorted(keys, key=_percentile):
            spread = _spread(_num(d.get(key)) for d in dicts)
            if spread is not None:
                bars.append(Bar(key, spread.value, spread.low, spread.high))
        if bars:
            latency.append(Group(variant, tuple(bars)))
    if latency:
        title = "Latency percentiles per variant (median of rounds, whiskers min..max)"
        charts.append(Chart(title, "ms", tuple(latency)))

    metrics = doc.get("metrics")
    ratios = [
        Group(str(key).replace("_over_", " / "), (Bar("ratio", _num(value)),))
        for key, value in (metrics.items() if isinstance(metrics, Mapping) else [])
        if "_over_" in str(key) and math.isfinite(_num(value))
    ]
    if ratios:
        charts.append(Chart("Ratios vs baselines", "×", tuple(ratios), target=1.0))
    return charts


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return format_number(seconds)
    if seconds < 60:
        return f"{format_number(seconds)} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# -- HTML -------------------------------------------------------------------------------


def _e(x: Any) -> str:
    return escape(str(x))


def _slug(name: str, taken: set[str]) -> str:
    base = "r-" + (re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "result")
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


def _badge(check: Check) -> str:
    if check.passed:
        return '<span class="badge pass">PASS</span>'
    # A missed goal is to explain, not a failure of the run: amber, not red.
    return f'<span class="badge {"fail" if check.kind == "gate" else "miss"}">FAIL</span>'


def _banner(checks: Sequence[Check]) -> str:
    gates = [c for c in checks if c.kind == "gate"]
    goals = [c for c in checks if c.kind == "goal"]
    failed = sum(not c.passed for c in gates)
    if not gates:
        cls, text = "none", "No gates in this result"
    elif failed:
        cls, text = "fail", f"{failed} of {len(gates)} gate{'s' if len(gates) > 1 else ''} failed"
    else:
        cls, text = "pass", f"All {len(gates)} gate{'s' if len(gates) > 1 else ''} passed"
    extra = ""
    if goals:
        reached = sum(c.passed for c in goals)
        extra = f'<span class="sub">goals: {reached} of {len(goals)} reached</span>'
    return f'<div class="banner {cls}"><span>{_e(text)}</span>{extra}</div>'


def _summary_badge(checks: Sequence[Check]) -> str:
    gates = [c for c in checks if c.kind == "gate"]
    failed = sum(not c.passed for c in gates)
    if not gates:
        return '<span class="badge none">no gates</span>'
    if failed:
        return f'<span class="badge fail">{failed} failed</span>'
    return '<span class="badge pass">passed</span>'


def _checks_table(checks: Sequence[Check]) -> str:
    rows = []
    for c in checks:
        disagree = ""
        if c.stored is not None and c.stored != c.passed:
            filed = "PASS" if c.stored else "FAIL"
            disagree = f' <span class="filed" title="the file says {filed}">file: {filed}</span>'
        rows.append(
            f'<tr class="check {c.kind} {"pass" if c.passed else "fail"}">'
            f'<td>{_e(c.kind)}</td><td class="key">{_e(c.name)}</td>'
            f'<td class="num">{_e(format_number(c.value))}</td>'
            f'<td class="op">{_e(c.op)}</td>'
            f'<td class="num">{_e(format_number(c.target))}</td>'
            f"<td>{_e(c.unit)}</td>"
            f'<td class="verdict">{_badge(c)}{disagree}</td></tr>'
        )
    return (
        '<div class="table-wrap"><table class="checks"><thead><tr><th>kind</th><th>name</th>'
        '<th class="num">value</th><th>op</th><th class="num">target</th><th>unit</th>'
        "<th>verdict</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def _kv_tables(pairs: Sequence[tuple[str, Any]], head: tuple[str, str]) -> str:
    """Key/value pairs as a table, split in two side-by-side columns when long."""
    if len(pairs) >= TWO_COLUMNS_FROM:
        half = (len(pairs) + 1) // 2
        chunks = [pairs[:half], pairs[half:]]
    else:
        chunks = [pairs]
    tables = []
    for chunk in chunks:
        rows = "".join(
            f'<tr><td class="key">{_e(k)}</td><td class="num">{_e(_cell(v))}</td></tr>'
            for k, v in chunk
        )
        tables.append(
            f'<table class="kv"><thead><tr><th>{_e(head[0])}</th><th class="num">{_e(head[1])}'
            f"</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return f'<div class="kv-grid">{"".join(tables)}</div>'


def _details(title: str, count: int, body: str) -> str:
    return (
        f'<details><summary>{_e(title)} <span class="count">({count})</span></summary>'
        f"{body}</details>"
    )


def _rounds_table(rounds: Mapping[str, list[Mapping[str, Any]]]) -> str:
    columns: list[str] = []
    flat_rows: list[tuple[str, int, dict[str, Any]]] = []
    for variant, rs in rounds.items():
        for i, r in enumerate(rs, start=1):
            flat = dict(flatten(r))
            for key in flat:
                if key not in columns:
                    columns.append(key)
            flat_rows.append((variant, i, flat))
    # Let long dotted headers (latency_ms.p50) break after their dot.
    head = "".join(f'<th class="num">{_e(c).replace(".", ".<wbr>")}</th>' for c in columns)
    body = "".join(
        f'<tr><td class="key">{_e(v)}</td><td class="num">{i}</td>'
        + "".join(f'<td class="num">{_e(_cell(flat.get(c, "")))}</td>' for c in columns)
        + "</tr>"
        for v, i, flat in flat_rows
    )
    return (
        f'<div class="table-wrap"><table class="rounds"><thead><tr><th>variant</th>'
        f'<th class="num">round</th>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    )


def _section(item: Loaded, slug: str) -> str:
    doc = item.doc
    name = item.name
    title = doc.get("title")
    out = [f'<section class="result" id="{_e(slug)}">']
    out.append(f"<h2>{_e(title) if isinstance(title, str) and title else _e(name)}</h2>")
    meta = [f'<code class="name">{_e(name)}</code>']
    if doc.get("started_at") is not None:
        meta.append(f"started {_e(doc['started_at'])}")
    duration = _num(doc.get("duration_s"))
    if not math.isnan(duration):
        meta.append(f"took {_e(_duration(duration))}")
    if doc.get("quick") is True:
        meta.append('<span class="badge none">quick run</span>')
    meta.append(f"file <code>{_e(item.path.name)}</code>")
    out.append(f'<p class="meta">{" · ".join(meta)}</p>')

    checks = checks_of(doc)
    out.append(_banner(checks))
    if checks:
        out.append("<h3>Gates and goals</h3>")
        out.append(_checks_table(checks))

    notes = doc.get("notes")
    if isinstance(notes, list) and notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in notes)
        out.append(f'<h3>Notes</h3><ul class="notes">{items}</ul>')

    if "charts" in doc:
        raw = doc["charts"]
        charts = (
            [chart_from_dict(c) for c in raw if isinstance(c, Mapping)]
            if isinstance(raw, list)
            else []
        )
        caption = ""
    else:
        charts = derived_charts(doc)
        caption = (
            '<p class="caption">This result carries no charts of its own: these are drawn '
            "from its rounds and ratio metrics.</p>"
        )
    if charts:
        figures = "".join(
            f'<figure class="chart">{render_chart(c, width=CHART_PX)}</figure>' for c in charts
        )
        out.append(f'<h3>Charts</h3>{caption}<div class="charts">{figures}</div>')

    metrics = doc.get("metrics")
    if isinstance(metrics, Mapping) and metrics:
        out.append("<h3>Metrics</h3>")
        out.append(_kv_tables(flatten(metrics), ("figure", "value")))

    rounds = _round_lists(doc)
    if rounds:
        n = sum(len(rs) for rs in rounds.values())
        out.append(_details(f"Rounds of {len(rounds)} variants", n, _rounds_table(rounds)))
    for key, label in (("params", "Parameters"), ("machine", "Machine")):
        value = doc.get(key)
        if isinstance(value, Mapping) and value:
            pairs = flatten(value)
            out.append(_details(label, len(pairs), _kv_tables(pairs, ("key", "value"))))
    other = {k: v for k, v in doc.items() if k not in KNOWN_KEYS}
    if other:
        pairs = flatten(other)
        out.append(_details("Other fields", len(pairs), _kv_tables(pairs, ("key", "value"))))
    out.append("</section>")
    return "".join(out)


CSS: Final = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d8dee4;--bg:#f3f5f7;--card:#fff;
--pass:#1a7f37;--pass-bg:#dafbe1;--fail:#cf222e;--fail-bg:#ffebe9;--warn:#7d4e00;
--warn-bg:#fff8c5;--none:#57606a;--none-bg:#eaeef2}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:21px;margin:0 0 2px}
h3{font-size:15px;margin:22px 0 8px;color:#32383f}
code,.key{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.meta{color:var(--muted);margin:0}
.meta code{background:var(--none-bg);padding:1px 5px;border-radius:4px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:22px 26px;margin:22px 0;box-shadow:0 1px 2px rgba(31,35,40,.04)}
.overview table{margin-top:6px}
.banner{display:flex;gap:16px;align-items:baseline;flex-wrap:wrap;padding:10px 14px;
border-radius:6px;margin:16px 0 4px;font-weight:600;border-left:5px solid}
.banner .sub{font-weight:400;color:var(--fg)}
.banner.pass{background:var(--pass-bg);border-color:var(--pass);color:var(--pass)}
.banner.fail{background:var(--fail-bg);border-color:var(--fail);color:var(--fail)}
.banner.none{background:var(--none-bg);border-color:#afb8c1;color:var(--none)}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-weight:600;color:var(--muted);background:#f6f8fa;white-space:nowrap}
tbody tr:nth-child(even) td{background:#fafbfc}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.op{text-align:center;font-family:ui-monospace,Menlo,Consolas,monospace}
tr.check.gate.fail td{background:#fff5f5}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:700;
letter-spacing:.02em}
.badge.pass{background:var(--pass-bg);color:var(--pass)}
.badge.fail{background:var(--fail);color:#fff}
.badge.miss{background:var(--warn-bg);color:var(--warn)}
.badge.none{background:var(--none-bg);color:var(--none)}
.filed{color:var(--muted);font-size:12px;margin-left:6px}
.notes{background:var(--warn-bg);border-left:5px solid #d4a72c;border-radius:6px;
margin:0;padding:10px 16px 10px 34px}
.notes li{margin:3px 0}
.caption{color:var(--muted);margin:-4px 0 10px;font-size:13px}
.charts{display:grid;gap:14px}
figure.chart{margin:0;border:1px solid var(--line);border-radius:8px;padding:6px 0;background:#fff}
figure.chart svg{display:block;max-width:100%;height:auto;margin:0 auto}
.kv-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:0 24px}
.table-wrap{overflow-x:auto}
details{margin:12px 0 0;border:1px solid var(--line);border-radius:6px;padding:7px 12px}
details[open]{padding-bottom:12px}
summary{cursor:pointer;font-weight:600;color:#32383f}
summary .count{color:var(--muted);font-weight:400}
details > div,details > .kv-grid{margin-top:8px}
.skipped li{margin:2px 0}
table.rounds{font-size:12px}
table.rounds th,table.rounds td{padding:4px 7px}
table.rounds th{white-space:normal;vertical-align:bottom}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:28px}
"""


def render_page(
    results: Sequence[Loaded],
    skipped: Sequence[Skipped],
    *,
    source: str,
    generated_at: str,
) -> str:
    """The report page for already loaded ``results`` (in the order given)."""
    taken: set[str] = set()
    slugs = [_slug(r.name, taken) for r in results]
    overview_rows = []
    for item, slug in zip(results, slugs, strict=True):
        title = item.doc.get("title")
        started = item.doc.get("started_at")
        overview_rows.append(
            f'<tr><td><a href="#{_e(slug)}" class="key">{_e(item.name)}</a></td>'
            f"<td>{_e(title) if isinstance(title, str) else ''}</td>"
            f"<td>{_e(started) if started is not None else ''}</td>"
            f"<td>{_summary_badge(checks_of(item.doc))}</td></tr>"
        )
    skipped_note = (
        f' · <a href="#skipped">{len(skipped)} file{"s" if len(skipped) > 1 else ""} skipped</a>'
        if skipped
        else ""
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>mlscale report</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<header><h1>mlscale report</h1>",
        f'<p class="meta">{len(results)} result{"s" if len(results) != 1 else ""} from '
        f"<code>{_e(source)}</code> · generated {_e(generated_at)}{skipped_note}</p></header>",
        '<section class="overview"><h3 style="margin-top:0">Results</h3>'
        '<div class="table-wrap"><table><thead><tr><th>name</th><th>title</th><th>started</th>'
        "<th>gates</th></tr></thead><tbody>" + "".join(overview_rows) + "</tbody></table></div>"
        "</section>",
    ]
    parts += [_section(item, slug) for item, slug in zip(results, slugs, strict=True)]
    if skipped:
        items = "".join(f"<li><code>{_e(s.path.name)}</code>: {_e(s.reason)}</li>" for s in skipped)
        parts.append(
            '<section class="skipped" id="skipped"><h3 style="margin-top:0">Skipped files</h3>'
            f"<ul>{items}</ul></section>"
        )
    parts.append("<footer>generated by <code>mlscale report</code></footer></main></body></html>")
    return "\n".join(parts) + "\n"


def render_report(results_dir: Path) -> str:
    """The report page for every result JSON in ``results_dir``.

    Raises :class:`MlscaleError` if the directory does not exist or holds no result.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise MlscaleError(f"no results directory at {results_dir}")
    results, skipped = load_results(results_dir)
    if not results:
        why = f" ({len(skipped)} *.json file(s) skipped as not results)" if skipped else ""
        raise MlscaleError(f"no results in {results_dir}: no *.json result documents{why}")
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    return render_page(results, skipped, source=str(results_dir), generated_at=generated)


def write_report(results_dir: Path, out: Path | None = None) -> Path:
    """Write the report page of ``results_dir`` to ``out`` (default ``results_dir/report.html``).

    Returns the path written. Raises :class:`MlscaleError` if the directory does not
    exist, holds no result, or the page cannot be written.
    """
    results_dir = Path(results_dir)
    page = render_report(results_dir)
    target = Path(out) if out is not None else results_dir / "report.html"
    tmp = target.with_name(target.name + ".tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:
        raise MlscaleError(
            f"could not write the report to {target}: {exc.strerror or exc}"
        ) from exc
    return target
