"""The ``catalog match --pairs`` format: JSON Lines in, one decision per line out, in order.

Input lines are ``{"left": {...}, "right": {...}}`` with any of the ``MatchRecord`` fields (extra keys, such as a
benchmark's ``label``, are ignored); output lines are ``{"match": bool, "score": float}`` and, when asked,
``"reasons"``. A line that is not such an object stops the run with its line number: a silently skipped pair
would shift every later answer against its question.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import orjson

from app.domain.matching.records import from_mapping
from app.domain.matching.scoring import Matcher, ThresholdName


class PairsFormatError(ValueError):
    pass


def score_pair_lines(
    lines: Iterable[bytes], matcher: Matcher, threshold: ThresholdName = "match", reasons: bool = False
) -> Iterator[bytes]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            pair = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise PairsFormatError(f"line {number}: not JSON ({exc})") from None
        if (
            not isinstance(pair, dict)
            or not isinstance(pair.get("left"), dict)
            or not isinstance(pair.get("right"), dict)
        ):
            raise PairsFormatError(f'line {number}: expected {{"left": {{...}}, "right": {{...}}}}')
        decision = matcher.score(from_mapping(pair["left"]), from_mapping(pair["right"]), threshold)
        out: dict[str, object] = {"match": decision.match, "score": decision.score}
        if reasons:
            out["reasons"] = list(decision.reasons)
        yield orjson.dumps(out) + b"\n"
