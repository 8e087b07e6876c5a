"""``mlscale bench NAME``: run one benchmark, print its verdicts, write its JSON."""

from __future__ import annotations

import click

from ..bench.registry import BENCHMARKS, run_benchmark


@click.command()
@click.argument("name", type=click.Choice(sorted(BENCHMARKS)))
@click.option("--quick", is_flag=True, help="A short run (under a minute).")
@click.option(
    "--out",
    default="results",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory for NAME.json.",
)
@click.option("--check", is_flag=True, help="Exit 1 if a gate fails.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def bench(name: str, quick: bool, out: str, check: bool, quiet: bool) -> int:
    """Run benchmark NAME and write OUT/NAME.json with its metrics, gates and goals."""
    result, path = run_benchmark(name, quick=quick, out=out, quiet=quiet)
    click.echo(f"{result.title}")
    for kind, verdicts in (("gate", result.gates), ("goal", result.goals)):
        for v in verdicts:
            mark = "PASS" if v.passed else "FAIL"
            click.echo(f"  {kind} {mark}  {v.name}: {v.value:.4g} {v.op} {v.target:g} {v.unit}")
    for note in result.notes:
        click.echo(f"  note: {note}")
    click.echo(f"results written to {path}")
    return 1 if check and not result.passed else 0
