"""How a shop titles an item: the same product, spelled the shop's own way (issue 10).

Real vendors retitle what they sell: the brand moves to the front or the end, words change order, "and" becomes
"&", a model number loses or gains its hyphen, a title is shouted in capitals. Each shop (seed) and item gets one
deterministic spelling, so a store looks the same on every run, and the simulators still know which item each
listing is (``Simulator.truth``) so a test can score how a catalog unified them.
"""

from __future__ import annotations

import re

from simulators.common import unit

_SALT_BRAND = 0x71E1
_SALT_ORDER = 0x71E2
_SALT_ABBR = 0x71E3
_SALT_CODE = 0x71E4
_SALT_CASE = 0x71E5

_CODE = re.compile(r"\b([A-Za-z]{1,4})-?([0-9]{1,4}[A-Za-z]?)\b")


def retitle(title: str, brand: str | None, seed: int, item_id: int) -> str:
    """The shop's title for an item titled ``title`` in the shared catalog."""
    out = title
    words = out.split()
    starts_with_brand = bool(brand) and out.lower().startswith(f"{brand} ".lower())
    if len(words) >= 3 and not starts_with_brand and unit(seed, item_id, _SALT_ORDER) < 0.3:
        out = f"{words[-1]}, {' '.join(words[:-1])}"  # "Silver Pot With Glass Cap" -> "Cap, Silver Pot With Glass"
    roll = unit(seed, item_id, _SALT_BRAND)
    if brand and starts_with_brand and roll < 0.5:
        rest = out[len(brand) + 1 :]
        out = f"{rest} by {brand}" if roll < 0.25 else f"{rest}, {brand}"
    elif brand and brand.lower() not in out.lower() and roll < 0.4:
        out = f"{brand} {out}" if roll < 0.3 else f"{out} - {brand}"
    if unit(seed, item_id, _SALT_ABBR) < 0.6:
        out = re.sub(r"\band\b", "&", out) if " and " in out else out.replace(" & ", " and ")
        out = re.sub(r"\bwith\b", "w/", out, flags=re.IGNORECASE)
    if unit(seed, item_id, _SALT_CODE) < 0.5:
        out = _CODE.sub(lambda m: _respell_code(m, "-" not in m.group(0)), out)
    if unit(seed, item_id, _SALT_CASE) < 0.15:
        out = out.upper()
    return out


def _respell_code(m: re.Match[str], hyphenate: bool) -> str:
    """A model number with its letters and digits joined or hyphenated: "S10" <-> "S-10"."""
    letters, digits = m.group(1), m.group(2)
    if not any(c.isdigit() for c in m.group(0)) or letters.lower() in {"by", "w"}:
        return m.group(0)
    return f"{letters}-{digits}" if hyphenate else f"{letters}{digits}"
