"""The public product-matching benchmarks, read from their Ditto text form (see ``shared/matching/SOURCES.md``).

``python -m tools.matching_data convert`` writes each split as the JSON Lines ``catalog match --pairs`` reads,
with the label kept beside the pair, so evaluation runs the real command on the real files.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson



def default_dir() -> Path:
    """``../shared/matching`` beside the checkout (a worktree nested deeper finds the nearest one above it)."""
    root = Path(__file__).resolve().parents[1]
    for folder in root.parents:
        candidate = folder / "shared" / "matching"
        if candidate.is_dir():
            return candidate
    return root.parent / "shared" / "matching"

DATASETS = ("Abt-Buy", "Amazon-Google")
SPLITS = ("train", "valid")
# Benchmark column -> MatchRecord field.
_COLUMNS = {"name": "title", "title": "title", "description": "description", "manufacturer": "brand", "price": "price"}
_FIELD = re.compile(r"COL (\w+) VAL(.*?)(?= COL \w+ VAL|$)")


@dataclass(frozen=True)
class LabelledPair:
    left: dict[str, Any]
    right: dict[str, Any]
    label: bool


def parse_record(text: str) -> dict[str, Any]:
    """One ``COL field VAL value ...`` record as a match-record mapping; empty values are left out."""
    out: dict[str, Any] = {}
    for m in _FIELD.finditer(text):
        field, value = _COLUMNS.get(m.group(1)), m.group(2).strip()
        if field and value:
            out[field] = value
    return out


def read_split(path: Path) -> Iterator[LabelledPair]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            left, right, label = line.rstrip("\n").split("\t")
            yield LabelledPair(parse_record(left), parse_record(right), label.strip() == "1")


def split_path(data_dir: Path, dataset: str, split: str) -> Path:
    return data_dir / f"{dataset}-{split}.txt"


def write_jsonl(pairs: list[LabelledPair], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for p in pairs:
            out.write(orjson.dumps({"left": p.left, "right": p.right, "label": int(p.label)}) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["convert"])
    parser.add_argument("--data", type=Path, default=None, help="folder of the benchmark .txt files")
    parser.add_argument("--out", type=Path, default=Path("var/matching"), help="where the .jsonl files go")
    args = parser.parse_args()
    args.data = args.data or default_dir()
    for dataset in DATASETS:
        for split in SPLITS:
            pairs = list(read_split(split_path(args.data, dataset, split)))
            target = args.out / f"{dataset}-{split}.jsonl"
            write_jsonl(pairs, target)
            print(f"{target}: {len(pairs)} pairs, {sum(p.label for p in pairs)} matches")


if __name__ == "__main__":
    main()
