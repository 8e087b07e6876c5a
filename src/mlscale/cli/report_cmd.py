"""``mlscale report``: the results directory as one static HTML page."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--results",
    "results_dir",
    default="results",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory of benchmark JSON files.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(dir_okay=False),
    help="HTML file to write [default: RESULTS/report.html].",
)
def report(results_dir: str, out: str | None) -> None:
    """Render every result in RESULTS as one HTML page with plots and tables."""
    from ..report.html import write_report

    path = write_report(Path(results_dir), Path(out) if out else None)
    click.echo(f"report written to {path}")
