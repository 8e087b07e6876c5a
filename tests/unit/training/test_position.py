"""Positions: a short string, parsed back, refused for another reader or plan."""

from __future__ import annotations

import pytest

from mlscale.core.training.position import Position
from mlscale.errors import ConfigError


@pytest.mark.parametrize(
    "position",
    [Position(0, 1, 16, None), Position(5, 6, 32, 7, step=3, offset=4096)],
)
def test_round_trip(position: Position) -> None:
    text = position.to_string()
    assert len(text) < 40
    assert Position.parse(text) == position
    assert Position.parse(position) is position


@pytest.mark.parametrize(
    "text", ["", "tr1.0.1.16.n.0", "tr2.0.1.16.n.0.0", "tr1.3.2.16.n.0.0", "tr1.0.1.16.x.0.0",
             "tr1.0.1.16.n.-1.0"],
)
def test_malformed_positions_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="not a training-reader position"):
        Position.parse(text)


def test_a_position_of_another_reader_or_plan_is_refused() -> None:
    p = Position(1, 6, 32, 7, 2, 10)
    p.check(1, 6, 32, 7)
    for other in [(0, 6, 32, 7), (1, 4, 32, 7), (1, 6, 64, 7), (1, 6, 32, None)]:
        with pytest.raises(ConfigError, match="resume with the same"):
            p.check(*other)
