"""`catalog match --pairs`, and the benchmark converter feeding it (three real pairs of the public benchmarks,
see /work/shared/matching/SOURCES.md, in tests/fixtures/matching)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
from typer.testing import CliRunner

from app.cli import cli
from tools.matching_data import parse_record, read_split, write_jsonl

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "matching" / "ditto-excerpt.txt"


def jsonl(*pairs: dict[str, object]) -> bytes:
    return b"".join(orjson.dumps(p) + b"\n" for p in pairs)


def test_one_answer_per_pair_in_order(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(
        jsonl(
            {
                "left": {"title": "Apple iPhone 9", "gtin": "4006381333931"},
                "right": {"title": "x", "gtin": "04006381333931"},
            },
            {"left": {"title": "iPhone 13 Pro 128GB"}, "right": {"title": "iPhone 13 Pro 256GB"}},
            {
                "left": {"title": "Lenovo Yoga 920", "brand": "Lenovo", "price": 1099.99},
                "right": {"title": "Yoga 920 by Lenovo", "price": "1079.99"},
            },
        )
        + b"\n"  # a blank line is no pair
    )
    result = CliRunner().invoke(cli, ["match", "--pairs", str(pairs)])
    assert result.exit_code == 0, result.output
    answers = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert answers[0] == {"match": True, "score": 1.0}
    assert answers[1] == {"match": False, "score": 0.0}
    assert answers[2]["match"] is True and 0.5 < answers[2]["score"] <= 1.0
    assert set(answers[2]) == {"match", "score"}


def test_reasons_and_the_merge_threshold_on_request(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(jsonl({"left": {"title": "iPhone 13 Pro 128GB"}, "right": {"title": "iPhone 13 Pro 256GB"}}))
    result = CliRunner().invoke(cli, ["match", "--pairs", str(pairs), "--threshold", "merge", "--reasons"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == {"match": False, "score": 0.0, "reasons": ["variant_conflict:capacity"]}


def test_a_malformed_line_stops_with_its_number(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(jsonl({"left": {"title": "a"}, "right": {"title": "b"}}) + b'{"left": {}}\n')
    result = CliRunner().invoke(cli, ["match", "--pairs", str(pairs)])
    assert result.exit_code == 1
    assert "line 2" in result.stdout


def test_benchmark_records_are_read_into_match_fields() -> None:
    assert parse_record("COL name VAL sony dscw120p COL description VAL pink camera COL price VAL 104.95 ") == {
        "title": "sony dscw120p",
        "description": "pink camera",
        "price": "104.95",
    }
    # An empty last value must not swallow the field name before it.
    assert parse_record("COL title VAL window washer COL manufacturer VAL webroot COL price VAL ") == {
        "title": "window washer",
        "brand": "webroot",
    }


def test_converted_benchmark_pairs_through_the_real_command(tmp_path: Path) -> None:
    pairs = list(read_split(FIXTURE))
    assert [p.label for p in pairs] == [False, True, True]
    target = tmp_path / "excerpt.jsonl"
    write_jsonl(pairs, target)
    catalog = Path(sys.executable).with_name("catalog")
    out = subprocess.run([str(catalog), "match", "--pairs", str(target)], check=True, capture_output=True).stdout
    answers = [orjson.loads(line) for line in out.splitlines()]
    assert [a["match"] for a in answers] == [False, True, True]
