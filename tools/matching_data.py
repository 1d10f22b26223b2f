"""The public product-matching benchmarks, read from their Ditto text form (see ``shared/matching/SOURCES.md``).

``python -m tools.matching_data convert`` writes each split as the JSON Lines ``catalog match --pairs`` reads,
with the label kept beside the pair; ``python -m tools.matching_data evaluate`` converts, runs the real
``catalog match --pairs`` command on each split and prints precision, recall and F1 against the labels.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
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


def evaluate(jsonl: Path, threshold: str) -> tuple[float, float, float, int]:
    """Precision, recall, F1 and pair count of ``catalog match --pairs`` (a subprocess) on a labelled file."""
    catalog = Path(sys.executable).with_name("catalog")
    command = [str(catalog), "match", "--pairs", str(jsonl), "--threshold", threshold]
    output = subprocess.run(command, check=True, capture_output=True).stdout.splitlines()
    labels = [bool(orjson.loads(line)["label"]) for line in jsonl.read_bytes().splitlines() if line.strip()]
    if len(output) != len(labels):
        raise RuntimeError(f"{jsonl}: {len(labels)} pairs in, {len(output)} answers out")
    predicted = [bool(orjson.loads(line)["match"]) for line in output]
    tp = sum(p and y for p, y in zip(predicted, labels, strict=True))
    fp = sum(p and not y for p, y in zip(predicted, labels, strict=True))
    fn = sum(y and not p for p, y in zip(predicted, labels, strict=True))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["convert", "evaluate"])
    parser.add_argument("--data", type=Path, default=None, help="folder of the benchmark .txt files")
    parser.add_argument("--out", type=Path, default=Path("var/matching"), help="where the .jsonl files go")
    parser.add_argument("--splits", nargs="+", default=["valid"], choices=SPLITS, help="evaluate: which splits")
    parser.add_argument("--threshold", default="match", choices=["match", "merge"], help="evaluate: which one")
    args = parser.parse_args()
    args.data = args.data or default_dir()
    for dataset in DATASETS:
        for split in SPLITS:
            pairs = list(read_split(split_path(args.data, dataset, split)))
            target = args.out / f"{dataset}-{split}.jsonl"
            write_jsonl(pairs, target)
            if args.command == "convert":
                print(f"{target}: {len(pairs)} pairs, {sum(p.label for p in pairs)} matches")
    if args.command == "evaluate":
        print(f"| split | pairs | precision | recall | F1 |  (catalog match --pairs FILE --threshold {args.threshold})")
        print("|---|---|---|---|---|")
        for dataset in DATASETS:
            for split in args.splits:
                p, r, f, n = evaluate(args.out / f"{dataset}-{split}.jsonl", args.threshold)
                print(f"| {dataset} {split} | {n} | {p:.3f} | {r:.3f} | {f:.3f} |")


if __name__ == "__main__":
    main()
