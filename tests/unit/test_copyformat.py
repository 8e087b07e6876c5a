"""COPY statements' data layout, read before anything is sent; CSV both ways."""

from __future__ import annotations

import random
from typing import Any

import pytest

from mlscale.core.copyformat import CopyFormat, CopyLayout, csv_line, parse_csv, read_copy
from mlscale.errors import RoutingError


@pytest.mark.parametrize(
    ("sql", "with_rows", "want"),
    [
        ("COPY t FROM STDIN", True, {"format": CopyFormat.TEXT, "table": "t"}),
        (
            "COPY s.t (a, b) FROM STDIN WITH (FORMAT binary)",
            True,
            {"format": CopyFormat.BINARY, "schema": "s", "table": "t", "columns": ("a", "b")},
        ),
        ("COPY t FROM STDIN BINARY", True, {"format": CopyFormat.BINARY}),
        (
            "COPY t FROM STDIN (FORMAT csv)",
            True,
            {"format": CopyFormat.CSV, "delimiter": ",", "null": "", "quote": '"', "escape": '"'},
        ),
        ("COPY t FROM STDIN WITH CSV", True, {"format": CopyFormat.CSV, "delimiter": ","}),
        (
            "COPY t FROM STDIN (FORMAT csv, DELIMITER ';', NULL 'x', QUOTE '''', ESCAPE '\\')",
            True,
            {"delimiter": ";", "null": "x", "quote": "'", "escape": "\\"},
        ),
        ("COPY t FROM STDIN (FORMAT csv, QUOTE '|')", True, {"quote": "|", "escape": "|"}),
        ("COPY t FROM STDIN (FORMAT csv, HEADER false)", True, {"format": CopyFormat.CSV}),
        ("COPY t TO STDOUT (FORMAT csv, HEADER)", False, {"is_from": False}),
        ("COPY t FROM STDIN (DELIMITER E'\\t', NULL '\\N')", True, {"format": CopyFormat.TEXT}),
        (
            "COPY (SELECT a, b FROM t WHERE a > 1) TO STDOUT (FORMAT binary)",
            False,
            {"table": None, "query": "SELECT a, b FROM t WHERE a > 1"},
        ),
        ("COPY (SELECT 1) TO STDOUT (FORMAT csv)", False, {"table": None, "query": None}),
    ],
)
def test_layouts(sql: str, with_rows: bool, want: dict[str, Any]) -> None:
    layout = read_copy(sql, with_rows=with_rows)
    assert layout is not None
    for name, value in want.items():
        assert getattr(layout, name) == value, name


@pytest.mark.parametrize(
    "sql",
    ["SELECT 1", "COPY t FROM '/tmp/x.csv'", "COPY t TO PROGRAM 'gzip'", "COPY t FROM", "a; b"],
)
def test_no_layout_for_what_moves_no_data_here(sql: str) -> None:
    assert read_copy(sql, with_rows=False) is None


@pytest.mark.parametrize(
    ("sql", "with_rows", "message"),
    [
        ("COPY t TO STDOUT", True, r"call copy\(\) without rows"),
        ("COPY t FROM STDIN (FORMAT csv, HEADER)", True, "leave HEADER out"),
        ("COPY t FROM STDIN WITH CSV HEADER", True, "leave HEADER out"),
        ("COPY t FROM STDIN (HEADER match)", True, "leave HEADER out"),
        ("COPY t FROM STDIN (FORMAT csv, ENCODING 'latin1')", True, "leave ENCODING out"),
        ("COPY t TO STDOUT (ENCODING 'latin1')", False, "leave ENCODING out"),
        ("COPY t FROM STDIN (DELIMITER ',')", True, "text format with DELIMITER"),
        ("COPY t TO STDOUT WITH NULL ''", False, "text format with NULL"),
        ("COPY t FROM STDIN (FORMAT xml)", True, "not one of text, csv, binary"),
        ("COPY t FROM STDIN (FORMAT csv, DELIMITER ';;')", True, "single one-byte character"),
        (
            "COPY (DELETE FROM t RETURNING *) TO STDOUT (FORMAT binary)",
            False,
            "use FORMAT csv or text",
        ),
    ],
)
def test_refused_before_anything_is_sent(sql: str, with_rows: bool, message: str) -> None:
    with pytest.raises(RoutingError, match=message):
        read_copy(sql, with_rows=with_rows)


CSV = CopyLayout(is_from=True, format=CopyFormat.CSV, delimiter=",", null="", quote='"', escape='"')
ODD = CopyLayout(
    is_from=True, format=CopyFormat.CSV, delimiter=";", null="NULL", quote="'", escape="\\"
)


def test_csv_line_quotes_every_value_and_leaves_null_bare() -> None:
    values = [b"1", None, b"", b'say "hi", then\nleave', b"\\."]
    assert csv_line(values, CSV, b"") == b'"1",,"","say ""hi"", then\nleave","\\."\n'
    assert csv_line([b"it's", b"a\\b", None], ODD, b"NULL") == b"'it\\'s';'a\\\\b';NULL\n"


def test_parse_csv_as_the_server_writes_it() -> None:
    text = '1,,"","say ""hi"", then\nleave"\n2,x,"",\n'
    assert parse_csv(text, CSV) == [
        ("1", None, "", 'say "hi", then\nleave'),
        ("2", "x", "", None),
    ]
    assert parse_csv("'it\\'s';NULL;'NULL';plain\n", ODD) == [("it's", None, "NULL", "plain")]
    assert parse_csv("", CSV) == []
    assert parse_csv("\n", CSV) == [(None,)]
    with pytest.raises(ValueError, match="unterminated"):
        parse_csv('"open\n', CSV)


@pytest.mark.parametrize("layout", [CSV, ODD], ids=["default", "odd"])
def test_csv_round_trip(layout: CopyLayout) -> None:
    alphabet = ['"', "'", ",", ";", "\\", "\n", "\r", "a", "N", "U", "L", " ", "."]
    rng = random.Random(11)
    rows = [
        tuple(
            None
            if rng.random() < 0.2
            else "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
            for _ in range(3)
        )
        for _ in range(500)
    ]
    null = layout.null.encode()
    text = b"".join(
        csv_line([None if v is None else v.encode() for v in row], layout, null) for row in rows
    )
    assert parse_csv(text.decode(), layout) == rows
