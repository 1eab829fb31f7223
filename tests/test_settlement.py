"""Settlement rules: every transition's postings, and that notices arriving late, twice
or in any order leave the same ledger as one clean order."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.settlement import (
    FEES,
    MICROS,
    MS,
    Notice,
    Outcome,
    State,
    Step,
    Trade,
    apply,
    balanced,
    expire,
    reserve,
)


def raw(reserved=2_000, predicted_ms=4_000, take=1000, **kw) -> Trade:
    """A trade as the auction hands it over: before its reservation is booked."""
    fields = dict(
        id="t1",
        request_id="r1",
        imp_id="1",
        campaign_id="c1",
        publisher="site:s1",
        day=100,
        cur="USD",
        price_cpm_micros=reserved * 1000,
        price_cur_micros=reserved * 1000,
        reserved_micros=reserved,
        predicted_ms=predicted_ms,
        take_rate_bps=take,
        won_ns=0,
        expires_ns=1_000,
    )
    return Trade(**{**fields, **kw})


def trade(**kw) -> Trade:
    return reserve(raw(**kw)).trade


def bill(price=2.0) -> Notice:
    return Notice("bill", "t1", price=price)


def beacon(seconds: float) -> Notice:
    return Notice("attention", "t1", seconds=seconds)


def balances(steps: list[Step]) -> Counter:
    total: Counter = Counter()
    for step in steps:
        for posting in step.postings:
            for e in posting.entries:
                total[(e.account, e.unit)] += e.amount
    return Counter({k: v for k, v in total.items() if v})  # zeros dropped, signs kept


def test_the_win_reserves_the_charge():
    step = reserve(raw())
    (posting,) = step.postings
    assert posting.id == "t1:reserve" and balanced((posting,))
    assert {(e.account, e.amount) for e in posting.entries} == {
        ("campaign:c1", -2_000),
        ("pending:c1", 2_000),
    }
    assert step.trade.charged_micros == 2_000 and step.trade.state is State.PENDING


def test_the_bill_posts_the_charge_to_the_publisher_less_the_fee():
    step = apply(trade(), bill())
    assert step.outcome is Outcome.RECORDED and step.trade.state is State.POSTED
    (posting,) = step.postings
    assert balanced((posting,))
    got = {(e.account, e.unit): e.amount for e in posting.entries}
    assert got == {
        ("pending:c1", MICROS): -2_000,
        ("publisher:site:s1", MICROS): 1_800,
        (FEES, MICROS): 200,
        ("publisher:site:s1", MS): -4_000,
        ("campaign:c1", MS): 4_000,
    }
    assert step.released_micros == 0


def test_the_beacon_trues_the_charge_down_to_measured_attention_never_up():
    posted = apply(trade(), bill()).trade
    down = apply(posted, beacon(1.0))  # 1 s of 4 s predicted
    assert down.trade.charged_micros == 500 and down.released_micros == 1_500
    assert balanced(down.postings)
    up = apply(posted, beacon(9.0))
    assert up.trade.charged_micros == 2_000 and up.released_micros == 0  # never above R
    got = {(e.account, e.unit): e.amount for e in up.postings[0].entries}
    assert got[("campaign:c1", MS)] == 5_000  # the extra attention is recorded, not charged


def test_a_beacon_before_the_bill_is_kept_and_the_bill_posts_the_trued_charge():
    early = apply(trade(), beacon(2.0))
    assert early.outcome is Outcome.RECORDED and early.postings == ()
    posted = apply(early.trade, bill())
    assert posted.trade.charged_micros == 1_000 and posted.released_micros == 1_000
    late = apply(apply(trade(), bill()).trade, beacon(2.0))
    assert posted.trade == late.trade  # same end, either order


def test_loss_and_expiry_void_and_give_the_budget_back():
    lost = apply(trade(), Notice("loss", "t1", loss_reason=102))
    assert lost.trade.state is State.VOID and lost.trade.void_reason == "loss:102"
    assert lost.released_micros == 2_000 and lost.trade.charged_micros == 0
    assert expire(trade(), now_ns=999) is None  # not due yet
    expired = expire(trade(), now_ns=1_000)
    assert expired.trade.void_reason == "expired" and expired.released_micros == 2_000


def test_conflicts_are_refused_and_change_nothing():
    t = trade()
    posted = apply(t, bill()).trade
    void = apply(t, Notice("loss", "t1")).trade
    measured = apply(t, beacon(1.0)).trade
    cases = [
        (t, bill(price=1.5), "is not the clearing price 2.0"),
        (t, Notice("bill", "t1", price=2.0, cur="EUR"), 'is not the bid\'s currency "USD"'),
        (void, bill(), "was voided (loss:0)"),
        (posted, Notice("loss", "t1"), "was billed"),
        (measured, beacon(3.0), "already has 1000 attentive ms"),
        (void, beacon(1.0), "was voided"),
    ]
    for before, notice, message in cases:
        step = apply(before, notice)
        assert step.outcome is Outcome.CONFLICT and message in step.message
        assert step.trade == before and step.postings == ()


def test_repeats_are_duplicates():
    t = trade()
    for notice in (bill(), Notice("win", "t1", price=2.0), beacon(1.5)):
        once = apply(t, notice).trade
        assert apply(once, notice).outcome is Outcome.DUPLICATE
    void = apply(t, Notice("loss", "t1", loss_reason=2)).trade
    assert apply(void, Notice("loss", "t1", loss_reason=2)).outcome is Outcome.DUPLICATE
    assert expire(void, now_ns=10**9) is None


def test_a_zero_prediction_cannot_divide_by_zero():
    t = trade(predicted_ms=0)
    assert apply(apply(t, bill()).trade, beacon(0.0)).trade.charged_micros == 0


# -- any order, any repeats: the same ledger -----------------------------------------

lifecycles = st.sampled_from(
    [
        ("bill",),
        ("win", "bill"),
        ("bill", "attention"),
        ("win", "bill", "attention"),
        ("loss",),
        ("win", "loss"),
        ("attention",),  # measured, never billed: stays pending until it expires
        (),
    ]
)


def run(t: Trade, kinds: list[str], seconds: float) -> tuple[Trade, Counter]:
    """Reserve, then apply the notices of `kinds` in order; the trade and its balances."""
    notices = {
        "win": Notice("win", "t1", price=t.price_cur_micros / 1e6),
        "bill": Notice("bill", "t1", price=t.price_cur_micros / 1e6),
        "loss": Notice("loss", "t1", loss_reason=2),
        "attention": beacon(seconds),
    }
    steps = [reserve(t)]
    current = steps[0].trade
    for kind in kinds:
        step = apply(current, notices[kind])
        assert step.outcome is not Outcome.CONFLICT, step.message
        assert balanced(step.postings)
        steps.append(step)
        current = step.trade
    return current, balances(steps)


@settings(max_examples=300, deadline=None)
@given(
    lifecycle=lifecycles,
    reserved=st.integers(1, 10**9),
    predicted_ms=st.integers(0, 180_000),
    take=st.integers(0, 10_000),
    seconds=st.floats(0, 400, allow_nan=False),
    data=st.data(),
)
def test_any_order_with_duplicates_gives_the_clean_orders_ledger(
    lifecycle, reserved, predicted_ms, take, seconds, data
):
    t = raw(reserved, predicted_ms, take)
    clean, clean_balances = run(t, list(lifecycle), seconds)
    repeats = data.draw(st.lists(st.sampled_from(lifecycle), max_size=6)) if lifecycle else []
    shuffled = data.draw(st.permutations([*lifecycle, *repeats]))
    got, got_balances = run(t, list(shuffled), seconds)
    assert got == clean
    assert got_balances == clean_balances
    # the campaign pays exactly what the trade says; the fee never exceeds the charge
    assert -clean_balances.get(("campaign:c1", MICROS), 0) == clean.charged_micros
    assert 0 <= clean_balances.get((FEES, MICROS), 0) <= clean.charged_micros
    assert clean.charged_micros <= reserved
