"""Entry point of the ``mlscale`` command. Errors become one line on stderr and exit 1
(2 for bad input to a store's command: a FeatureError, PredictionError or RegistryError)."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

import click
import psycopg

from ..engine.connect import describe_failure
from ..errors import FeatureError, MlscaleError, PredictionError, RegistryError
from .ban_cmds import ban, unban
from .bench_cmd import bench
from .catalog_cmd import catalog
from .checkpoints_cmd import checkpoints
from .cluster_cmds import destroy, down, status, up
from .config_cmd import config
from .demo_cmd import demo
from .features_cmd import features
from .ha_cmds import failover, switchover
from .metrics_cmd import metrics
from .models_cmd import models
from .predictions_cmd import predictions
from .report_cmd import report
from .route_cmd import route_cmd
from .serve_cmd import keys, serve
from .shard_cmds import locate, shards


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what is being done to stderr.")
@click.version_option(package_name="mlscale")
def cli(verbose: bool) -> None:
    """Scale an ML platform's PostgreSQL: local clusters, pools, replicas, measured."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for command in (
    up,
    down,
    destroy,
    status,
    config,
    catalog,
    demo,
    bench,
    report,
    route_cmd,
    ban,
    unban,
    shards,
    locate,
    features,
    predictions,
    models,
    metrics,
    serve,
    keys,
):
    cli.add_command(command)
cli.add_command(switchover)  # issue 17: Patroni scopes
cli.add_command(failover)
cli.add_command(checkpoints)  # issue 18: checkpoints


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code.

    SIGTERM is handled like Ctrl-C, so a command stopped midway (say, ``up``
    while it creates a cluster) still rolls back what it started.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="mlscale",
            standalone_mode=False,
        )
    except (FeatureError, PredictionError, RegistryError) as exc:
        # Bad input to a store's command (unknown view or log, bad source): a usage error.
        click.echo(f"mlscale: error: {exc}", err=True)
        return 2
    except MlscaleError as exc:
        click.echo(f"mlscale: error: {exc}", err=True)
        return 1
    except psycopg.Error as exc:
        click.echo(f"mlscale: database error: {describe_failure(exc)}", err=True)
        return 1
    except (OSError, subprocess.SubprocessError) as exc:
        # Last resort: whatever the layers below did not translate, still one line.
        click.echo(f"mlscale: error: {describe_failure(exc)}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("mlscale: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("mlscale: interrupted", err=True)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
