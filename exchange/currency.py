"""Currency conversion for floors and prices, from a configured rate table.

The exchange keeps every amount in integer micros of USD; other currencies
exist only at the edges (a floor in `bidfloorcur`, a price in the response
`cur`). Rates are units of the currency per 1 USD.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

BASE = "USD"
MICROS = 1_000_000
# No real CPM comes near a million; a larger one is an input error, and the cap
# keeps every converted amount well inside int64 micros.
MAX_CPM = 1_000_000.0


class RateTable:
    def __init__(self, rates: Mapping[str, float]) -> None:
        if rates.get(BASE) != 1.0:
            raise ValueError(f"currency rates must include {BASE} = 1.0")
        for code, rate in rates.items():
            if len(code) != 3 or not code.isalpha() or not code.isupper():
                raise ValueError(f'currency code "{code}" must be 3 uppercase letters')
            if not (math.isfinite(rate) and rate > 0):
                raise ValueError(f"currency rate for {code} must be a positive number")
        self._rates = dict(rates)

    def __contains__(self, code: object) -> bool:
        return code in self._rates

    def __iter__(self):
        return iter(self._rates)

    def codes(self) -> list[str]:
        return sorted(self._rates)

    def to_usd_micros(self, amount: float, cur: str) -> int:
        """An amount in `cur` ("" means USD) as USD micros, rounded up.

        Rounding up matters for floors: a converted floor must never fall below
        what the publisher asked for. Floors repeat (a publisher has a few), so the
        conversion is cached: `round(x, 6)` is a decimal conversion, slow per request.
        """
        return _to_usd_micros(amount, self._rates[cur or BASE])

    def from_usd_micros(self, micros: int, cur: str) -> float:
        """USD micros as an amount in `cur`, rounded to 6 decimals for the wire."""
        return round(micros * self._rates[cur] / MICROS, 6)

    def response_currency(self, accepted: list[str]) -> str:
        """The first currency the caller accepts (validation ensured we know it)."""
        return accepted[0] if accepted else BASE


@functools.lru_cache(maxsize=4096)
def _to_usd_micros(amount: float, rate: float) -> int:
    return math.ceil(round(amount * MICROS / rate, 6))
