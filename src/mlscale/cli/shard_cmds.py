"""``mlscale shards`` (show and create shard maps) and ``mlscale locate KEY``."""

from __future__ import annotations

import json
import uuid
from typing import Any

import click

from ..config import ClusterConfig
from ..core.sharding import ShardDirectory
from ..core.shardmaps import KeyFamily, ShardMap, SlotMap
from ..core.slots import DEFAULT_SLOTS, KeyType
from ..core.topology import nodes_of
from ..engine import migrations
from ..engine.catalog_sync import load_directory, publish_map
from ..engine.connect import connect
from ..errors import MlscaleError
from .options import cluster_config, config_option, dir_option


def _directory(config: ClusterConfig) -> ShardDirectory:
    with connect(nodes_of(config)[0], config) as conn:
        return load_directory(conn)


def _describe(directory: ShardDirectory) -> dict[str, Any]:
    families: dict[str, Any] = {}
    for name, shard_map in sorted(directory.maps.items()):
        entry: dict[str, Any] = {
            "strategy": shard_map.strategy,
            "version": shard_map.version,
            "key_types": [str(t) for t in shard_map.key_types],
            "groups": list(shard_map.groups),
            "tables": sorted(t.name for t in directory.tables.values() if t.family == name),
        }
        if isinstance(shard_map, SlotMap):
            entry["slots"] = shard_map.slots
            entry["slot_counts"] = shard_map.slot_counts()
            entry["slot_ranges"] = {
                g: [[r.start, r.end] for r in shard_map.ranges_of(g)] for g in shard_map.groups
            }
        families[name] = entry
    return {"version": directory.version, "families": families}


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@dir_option
@config_option
@click.pass_context
def shards(ctx: click.Context, as_json: bool, cluster_dir: str, config_file: str | None) -> None:
    """Show the shard maps: per key family its strategy, version, groups, slot ranges
    and counts, and its sharded tables."""
    if ctx.invoked_subcommand is not None:
        return
    doc = _describe(_directory(cluster_config(cluster_dir, config_file)))
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    if not doc["families"]:
        click.echo("no shard maps yet: create one with `mlscale shards create FAMILY --key-type T`")
        return
    click.echo(f"sharding version {doc['version']}")
    for name, f in doc["families"].items():
        click.echo(
            f"family {name} ({', '.join(f['key_types'])}): {f['strategy']} map v{f['version']}, "
            f"tables: {', '.join(f['tables']) or 'none'}"
        )
        for group in f["groups"]:
            if "slot_counts" in f:
                ranges = ", ".join(
                    str(a) if a == b else f"{a}-{b}" for a, b in f["slot_ranges"][group]
                )
                click.echo(f"  {group}: {f['slot_counts'][group]} of {f['slots']} slots ({ranges})")
            else:
                click.echo(f"  {group}")


@shards.command("create")
@click.argument("family")
@click.option(
    "--key-type",
    "key_types",
    multiple=True,
    required=True,
    help="Type of the key column (int8, text, uuid, ...); repeat for a composite key.",
)
@click.option(
    "--slots", default=DEFAULT_SLOTS, show_default=True, help="Slot count (a power of two)."
)
@click.option("--groups", default=None, help="Shard groups, comma-separated (default: all).")
@dir_option
@config_option
def create(
    family: str,
    key_types: tuple[str, ...],
    slots: int,
    groups: str | None,
    cluster_dir: str,
    config_file: str | None,
) -> None:
    """Create key family FAMILY with a slot map spreading its slots evenly over the groups."""
    config = cluster_config(cluster_dir, config_file)
    names = (
        [g.strip() for g in groups.split(",") if g.strip()]
        if groups
        else [g.name for g in config.shard_groups]
    )
    shard_map = SlotMap.even(
        KeyFamily.of(family, *(KeyType.parse(t) for t in key_types)), names, slots
    )
    with connect(nodes_of(config)[0], config) as conn:
        migrations.migrate(conn)
        existing = load_directory(conn).maps.get(family)
        if existing is not None:
            raise MlscaleError(
                f"key family {family} already has a {existing.strategy} map "
                f"(v{existing.version}); see `mlscale shards`"
            )
        all_groups = [g.name for g in config.shard_groups]
        version = publish_map(conn, shard_map, "mlscale shards create", all_groups)
    click.echo(
        f"created family {family}: {slots} slots over {', '.join(names)} "
        f"(sharding version {version})"
    )


def _parse_key(text: str, key_type: KeyType) -> Any:
    if key_type.is_integer:
        try:
            return int(text)
        except ValueError:
            raise MlscaleError(f"{text!r} is not an integer ({key_type})") from None
    if key_type is KeyType.UUID:
        try:
            return uuid.UUID(text)
        except ValueError:
            raise MlscaleError(f"{text!r} is not a uuid") from None
    if key_type is KeyType.BYTEA:
        try:
            return bytes.fromhex(text.removeprefix("\\x"))
        except ValueError:
            raise MlscaleError(f"{text!r} is not hex bytes (bytea keys are given in hex)") from None
    return text


def _family_map(directory: ShardDirectory, family: str | None, table: str | None) -> ShardMap:
    if table is not None:
        return directory.map_of_table(table)
    if family is not None:
        return directory.map_of(family)
    if len(directory.maps) != 1:
        known = ", ".join(sorted(directory.maps)) or "none"
        raise MlscaleError(f"say which key family with --family (known: {known})")
    return next(iter(directory.maps.values()))


@click.command()
@click.argument("keys", nargs=-1, required=True)
@click.option(
    "--type",
    "key_type",
    default=None,
    help="How to read KEY: int2, int4, int8, text, uuid, bytea (default: the family's type).",
)
@click.option("--family", default=None, help="Key family (default: the only one).")
@click.option("--table", default=None, help="A sharded table whose family to use.")
@click.option("--json", "as_json", is_flag=True, help='Print {"slot": n, "shard_group": "..."}.')
@dir_option
@config_option
def locate(
    keys: tuple[str, ...],
    key_type: str | None,
    family: str | None,
    table: str | None,
    as_json: bool,
    cluster_dir: str,
    config_file: str | None,
) -> None:
    """Print the slot and shard group of KEY (one value per key column)."""
    shard_map = _family_map(_directory(cluster_config(cluster_dir, config_file)), family, table)
    types = shard_map.key_types
    if len(keys) != len(types):
        raise MlscaleError(
            f"family {shard_map.family.name} has {len(types)} key column(s) "
            f"({', '.join(types)}); give one value for each"
        )
    read_as = [KeyType.parse(key_type) if key_type else t for t in types]
    values = tuple(_parse_key(k, t) for k, t in zip(keys, read_as, strict=True))
    key = values[0] if len(values) == 1 else values
    group = shard_map.locate(key)
    slot = shard_map.slot(key) if isinstance(shard_map, SlotMap) else None
    slots = shard_map.slots if isinstance(shard_map, SlotMap) else None
    if as_json:
        click.echo(json.dumps({"slot": slot, "shard_group": group}))
    elif slot is None:
        click.echo(f"shard group {group} ({shard_map.strategy} map v{shard_map.version})")
    else:
        click.echo(f"slot {slot} of {slots} -> shard group {group}")
