"""Currency conversion at the edges: floors round up, prices to 6 decimals."""

import pytest

from exchange.currency import RateTable

RATES = RateTable({"USD": 1.0, "EUR": 0.92, "JPY": 150.0})


def test_floor_in_another_currency_never_rounds_below_the_ask():
    micros = RATES.to_usd_micros(1.0, "EUR")  # 1.0869565... USD
    assert micros == 1_086_957
    assert RATES.from_usd_micros(micros, "EUR") >= 1.0


def test_empty_currency_means_usd_and_response_defaults_to_usd():
    assert RATES.to_usd_micros(2.5, "") == 2_500_000
    assert RATES.response_currency([]) == "USD"
    assert RATES.response_currency(["JPY", "EUR"]) == "JPY"


def test_prices_out():
    assert RATES.from_usd_micros(2_000_000, "JPY") == 300.0


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ({"EUR": 1.0}, "must include USD = 1.0"),
        ({"USD": 1.0, "eur": 0.9}, "3 uppercase letters"),
        ({"USD": 1.0, "EUR": 0.0}, "positive number"),
    ],
)
def test_bad_rate_tables_are_refused(rates, message):
    with pytest.raises(ValueError, match=message):
        RateTable(rates)
