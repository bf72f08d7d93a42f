"""starter.py: bad input is refused before anything starts, with the field named."""

from __future__ import annotations

import io

import pytest

import starter


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["", "--steps", "5"], "topic"),
        (["   ", "--steps", "5"], "topic"),
        (["x" * 10_000], "topic"),
        (["binary\x00search"], "topic"),
        (["binary\x1b[31msearch"], "topic"),
        (["Binary search", "--steps", "0"], "--steps"),
        (["Binary search", "--steps", "-1"], "--steps"),
        (["Binary search", "--steps", "1000"], "--steps"),
    ],
)
async def test_invalid_request_exits_2_naming_the_field(
    argv: list[str], field: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens here: had the starter tried to start a workflow it would report a
    # connection failure (exit 1), not a validation error (exit 2).
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    out = io.StringIO()
    assert await starter.run(argv, out=out) == starter.EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert f"invalid {field}:" in error
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["Binary search", "--steps", "five"],
        ["Binary search", "--steps", "2.5"],
        ["Binary search", "--colour", "blue"],
        ["Binary search", "--audience", "toddlers"],
    ],
)
def test_malformed_command_line_exits_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        starter.parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_lecture_ids_are_readable_and_unique() -> None:
    first = starter.lecture_id_for("Binary Search: the algorithm!")
    second = starter.lecture_id_for("Binary Search: the algorithm!")
    assert first.startswith("lecture-binary-search-the-algorithm-")
    assert first != second
    assert starter.lecture_id_for("???").startswith("lecture-topic-")
