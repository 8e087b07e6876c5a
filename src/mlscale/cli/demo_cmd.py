"""``mlscale demo``: scaling claims measured on this machine."""

from __future__ import annotations

import click


@click.command()
@click.option(
    "--dir",
    "cluster_dir",
    default=None,
    type=click.Path(),
    help="Where to put the demo's cluster [default: a new $TMPDIR/mlscale-demo-* dir].",
)
@click.option(
    "--out",
    default="results",
    show_default=True,
    type=click.Path(),
    help="Directory for the JSON results.",
)
@click.option("--keep", is_flag=True, help="Leave the demo cluster running.")
@click.option("--quick", is_flag=True, help="Shorter rounds (for tests).")
def demo(cluster_dir: str | None, out: str, keep: bool, quick: bool) -> None:
    """Start a local cluster, run ML-shaped workloads, print and save what was measured."""
    from ..demo.runner import run_demo

    run_demo(cluster_dir=cluster_dir, out=out, keep=keep, quick=quick)
