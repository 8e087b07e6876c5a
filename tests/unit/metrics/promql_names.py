"""The metric names a PromQL expression (or a Grafana ``label_values`` query) reads.

A small lexer, enough for dashboards: string literals, label matchers ``{...}``,
ranges ``[...]`` and grouping lists (``by (...)``, ``on (...)``, ...) are removed
first, since their words are labels, values or durations; then every remaining
identifier not followed by ``(`` (a function call) and not a keyword is a metric.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from mlscale.metrics.names import METRICS

DASHBOARD = Path(__file__).resolve().parents[3] / "dashboards" / "grafana-mlscale.json"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan", "atan2",
}
_NUMBER = re.compile(r"^(0x[0-9a-f]+|\d+(\.\d*)?(e[+-]?\d+)?)$", re.IGNORECASE)


def metric_names(expr: str) -> set[str]:
    """The metric identifiers of PromQL ``expr``."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("{}", text)
    text = _RANGE.sub("[]", text)
    text = _GROUPING.sub(" ", text)
    out = set()
    for m in _IDENT.finditer(text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _KEYWORDS or _NUMBER.match(word):
            continue
        out.add(word)
    return out


def label_values_metric(query: str) -> set[str]:
    """The metric of a Grafana ``label_values(metric, label)`` query (none for
    ``label_values(label)``)."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
    return metric_names(m.group(1)) if m else set()


def exposed_names() -> dict[str, str]:
    """Each series name an exposition carries -> the metric of the table it belongs to."""
    return {series: m.name for m in METRICS for series in m.series_names}


def dashboard_exprs(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of the dashboard."""
    return list(_targets(json.loads(path.read_text())["panels"]))


def _targets(panels: list[dict]) -> Iterator[tuple[str, str]]:  # type: ignore[type-arg]
    for p in panels:
        for t in p.get("targets", []):
            yield p["title"], t["expr"]
        yield from _targets(p.get("panels", []))


def template_queries(path: Path = DASHBOARD) -> list[str]:
    """The queries of the dashboard's query variables."""
    out = []
    for v in json.loads(path.read_text())["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


def for_prometheus(expr: str) -> str:
    """``expr`` with Grafana's variables replaced, as Prometheus can evaluate it."""
    return expr.replace("$__rate_interval", "1m").replace("$job", ".*")
