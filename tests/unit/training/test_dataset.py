"""The torch-style dataset without torch: worker detection, pickling, refusals."""

from __future__ import annotations

import pickle
import sys
import types
from collections.abc import Iterator

import pytest

from mlscale.errors import ConfigError
from mlscale.stores.training.dataset import TrainingDataset, current_worker


def test_without_torch_the_process_is_worker_0_of_1() -> None:
    if "torch" in sys.modules:
        pytest.skip("torch is imported in this session")
    assert current_worker() == (0, 1)


@pytest.fixture()
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.SimpleNamespace]:
    """A stand-in torch in sys.modules whose get_worker_info says worker 2 of 3."""
    info = types.SimpleNamespace(id=2, num_workers=3)
    data = types.SimpleNamespace(get_worker_info=lambda: info)
    torch = types.SimpleNamespace(utils=types.SimpleNamespace(data=data))
    monkeypatch.setitem(sys.modules, "torch", torch)
    yield info


def test_the_worker_comes_from_torch_when_it_is_imported(
    fake_torch: types.SimpleNamespace,
) -> None:
    assert current_worker() == (2, 3)


def test_dataset_pickles_small_and_without_a_cluster() -> None:
    ds = TrainingDataset("/nowhere/mlscale.toml", "events", rank=1, world_size=2, seed=3)
    copy = pickle.loads(pickle.dumps(ds))
    assert (copy.config, copy.table, copy.rank, copy.world_size) == (
        "/nowhere/mlscale.toml", "events", 1, 2)
    assert copy.reader_options == {"seed": 3} and copy._cluster is None


def test_dataset_refuses_a_split_of_its_own() -> None:
    with pytest.raises(ConfigError):
        TrainingDataset("x.toml", "t", split=None)
    with pytest.raises(ConfigError):
        TrainingDataset("x.toml", "t", rank=2, world_size=2)
