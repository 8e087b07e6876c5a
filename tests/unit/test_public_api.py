"""The public API and the exception tree."""

from __future__ import annotations

import builtins
import inspect
import subprocess
import sys

import psycopg

import mlscale
from mlscale import errors


def test_all_names_exist_and_nothing_public_is_missing() -> None:
    for name in mlscale.__all__:
        assert hasattr(mlscale, name), name
    public_errors = {
        n
        for n, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == errors.__name__
    }
    assert public_errors == set(errors.__all__)
    assert public_errors <= set(mlscale.__all__)


def test_one_tree_rooted_at_mlscale_error_with_no_builtin_names() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.MlscaleError), name
        assert not hasattr(builtins, name), f"{name} shadows a builtin"
        assert name in (errors.__doc__ or ""), f"{name} is missing from the drawn tree"


def test_unavailable_node_is_also_a_driver_operational_error() -> None:
    exc = errors.NodeUnavailableError("no connection")
    assert isinstance(exc, psycopg.OperationalError)
    assert isinstance(exc, errors.DatabaseError)


def test_import_loads_neither_local_clusters_nor_benchmarks() -> None:
    # A fresh interpreter: this one holds whatever the other tests imported.
    code = (
        "import sys, mlscale\n"
        "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['mlscale', 'local'], ['mlscale', 'bench'])))\n"
        "print(mlscale.LocalCluster.__module__)\n"  # the lazy name still resolves
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "mlscale.local.cluster"]
