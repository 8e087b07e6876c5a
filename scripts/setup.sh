#!/usr/bin/env bash
# Installs what mlscale needs on Debian 12, idempotently: system packages
# (PostgreSQL 15 server, Redis, PgBouncer, Prometheus, etcd, InfluxDB, build tools), a
# Python venv at .venv with mlscale and its dev dependencies, and Patroni in a venv of its
# own (for `mlscale up --ha`). Fast when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_apt+=(postgresql-15 postgresql-client-15)
[ -x /usr/lib/postgresql/15/bin/pg_basebackup ] || need_apt+=(postgresql-client-15)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v pgbouncer >/dev/null || need_apt+=(pgbouncer)
command -v prometheus >/dev/null || need_apt+=(prometheus)
[ -x /usr/bin/etcd ] || need_apt+=(etcd-server)
[ -x /usr/bin/etcdctl ] || need_apt+=(etcd-client)
# InfluxDB 1.6, the peer of `mlscale bench metrics` (which runs its own influxd).
command -v influxd >/dev/null || need_apt+=(influxdb)
command -v gcc >/dev/null || need_apt+=(build-essential)
command -v useradd >/dev/null || need_apt+=(passwd)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing system packages: ${need_apt[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "setup: installing ${need_apt[*]}"
  # Package scripts must not start system-wide servers (a default PostgreSQL
  # cluster on 5432, Redis on 6379): mlscale runs its own on free ports.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  mkdir -p /etc/postgresql-common
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # etcd-server's and influxdb's packages start (and enable at boot) system-wide servers
  # where policy-rc.d did not stop them; mlscale runs its own on free loopback ports.
  for unit in etcd influxdb; do
    if command -v systemctl >/dev/null && systemctl is-enabled "$unit" >/dev/null 2>&1; then
      systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
  done
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# pgvector (the vector store, mlscale.stores.vectors): Debian 12 packages none for
# PostgreSQL 15, so it is built from Debian trixie's source package against the PG 15
# headers. Trixie is added for source packages only (deb-src) and pinned below every
# binary, so no trixie binary can ever be installed. Skipped when vector.control exists.
PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config
if [ ! -e "$("$PG15_CONFIG" --sharedir)/extension/vector.control" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: pgvector is missing for PostgreSQL 15; run as root to build it" >&2
    exit 1
  fi
  started=$(date +%s)
  echo "setup: building pgvector from Debian trixie's source package"
  export DEBIAN_FRONTEND=noninteractive
  src_list=/etc/apt/sources.list.d/mlscale-trixie-src.sources
  if [ ! -e "$src_list" ]; then
    printf '%s\n' 'Types: deb-src' 'URIs: http://deb.debian.org/debian' 'Suites: trixie' \
      'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' > "$src_list"
  fi
  printf '%s\n' 'Package: *' 'Pin: release n=trixie' 'Pin-Priority: -1' \
    > /etc/apt/preferences.d/mlscale-trixie-src-only
  apt-get update -qq
  # The headers of the server's own version when the archive still has it (no other
  # PostgreSQL package is upgraded), else the current ones (same ABI within a major).
  pg_ver=$(dpkg-query -W -f='${Version}' postgresql-15)
  if ! apt-get install -y -qq --no-install-recommends "postgresql-server-dev-15=$pg_ver" dpkg-dev >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends postgresql-server-dev-15 dpkg-dev >/dev/null
  fi
  build=$(mktemp -d)
  (
    cd "$build"
    apt-get source -qq -t trixie pgvector >/dev/null 2>&1 || apt-get source -qq pgvector/trixie >/dev/null
    cd pgvector-*/
    # with_llvm=no: no JIT bitcode (pgvector's functions are C; the bitcode only serves
    # inlining into JIT-compiled expressions, which small vector queries never use).
    make -s -j"$(nproc)" PG_CONFIG="$PG15_CONFIG" with_llvm=no >/dev/null
    make -s install PG_CONFIG="$PG15_CONFIG" with_llvm=no >/dev/null
  )
  rm -rf "$build"
  echo "setup: pgvector $(sed -n "s/^default_version = '\(.*\)'/\1/p" \
    "$("$PG15_CONFIG" --sharedir)/extension/vector.control") installed in $(( $(date +%s) - started )) s"
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: mlscale needs Python >= 3.11 (found $("$PY" --version 2>&1))" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.mlscale-deps
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi

# Patroni (the HA agent of `mlscale up --ha`) in its own venv, built from the system's
# /usr/bin/python3: the agents run as the servers' unprivileged OS user, who can execute
# neither a venv under /root nor one whose base Python lives there (pyenv). mlscale finds
# it at the same place (src/mlscale/local/binaries.py, find_patroni).
PATRONI_SPEC='patroni[etcd3,psycopg3]==4.1.*'
if [ "$(id -u)" -eq 0 ]; then
  patroni_venv=${MLSCALE_PATRONI_VENV:-/opt/mlscale/patroni}
else
  patroni_venv=${MLSCALE_PATRONI_VENV:-${XDG_DATA_HOME:-$HOME/.local/share}/mlscale/patroni}
fi
patroni_stamp="$patroni_venv/.mlscale-spec"
if [ "$(cat "$patroni_stamp" 2>/dev/null)" != "$PATRONI_SPEC" ] || [ ! -x "$patroni_venv/bin/patroni" ]; then
  echo "setup: installing Patroni ($PATRONI_SPEC) into $patroni_venv"
  mkdir -p "$patroni_venv"
  [ -x "$patroni_venv/bin/python" ] || /usr/bin/python3 -m venv "$patroni_venv"
  "$patroni_venv/bin/python" -m pip install -q --upgrade pip
  "$patroni_venv/bin/python" -m pip install -q "$PATRONI_SPEC"
  echo "$PATRONI_SPEC" > "$patroni_stamp"
  # As root the agents run as the unprivileged servers' user: every user may traverse and
  # run the venv (a umask of 077 would lock that user out).
  if [ "$(id -u)" -eq 0 ]; then
    chmod -R a+rX "$patroni_venv"
    d=$(dirname "$patroni_venv")
    while [ "$d" != / ]; do chmod a+x "$d"; d=$(dirname "$d"); done
  fi
fi
