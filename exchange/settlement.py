"""Settlement rules: what each step of a trade's life does to the ledger.

A won bid is a trade denominated in attention: the campaign buys the predicted
attentive seconds at its clearing price. Every step is a double-entry posting
whose entries sum to zero per unit (integer micros of USD, integer attentive
milliseconds), with R the reserved charge (clearing CPM / 1000) and T the final
charge:

    win      reserve  campaign −R, pending +R
    bill     post     pending −R, publisher +(T − fee), exchange fee +fee, campaign +(R − T)
                      attention: publisher −A, campaign +A   (A measured, else predicted)
    beacon   true-up  once posted: the charge moves from R to T = min(R, R · measured / predicted)
    loss or expiry    void     pending −R, campaign +R

States: pending → posted, or pending → void. Notices may come late, twice or in
any order: a beacon before the bill is kept and applied when the bill posts, a
repeat is a duplicate (same outcome, nothing moves), and a notice that contradicts
what is recorded (another price, a bill after a void, a loss after a bill) is a
conflict and is refused. Pure functions, no I/O: the ledger worker loads a
trade, applies an event here, and writes what comes back in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

FEES = "exchange:fees"
MICROS, MS = "micros", "ms"
MAX_MEASURED_MS = 180_000  # attentive time is capped at 180 s, as aCPM conventions do
BPS = 10_000
# A notice's price must be the clearing price to the cent: callers often substitute
# ${AUCTION_PRICE} with two decimals. Anything further off is another price: refused.
PRICE_TOLERANCE_MICROS = 5_000


class State(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOID = "void"


class Outcome(StrEnum):
    RECORDED = "recorded"  # the notice changed the trade (or was the first of its kind)
    DUPLICATE = "duplicate"  # the same notice again: nothing moved
    CONFLICT = "conflict"  # contradicts what is recorded: refused


@dataclass(slots=True)
class Trade:
    """One won bid and everything learned about it since. Money in micros, time in ns.

    Treated as immutable (steps return a `replace`d copy), but not frozen: one is built
    on the hot path for every win, where frozen's per-field setattr costs 2 µs.
    """

    id: str
    request_id: str
    imp_id: str
    campaign_id: str
    publisher: str
    day: int  # UTC day of the win: whose budget it is
    cur: str  # the response currency
    price_cpm_micros: int  # clearing CPM, USD micros
    price_cur_micros: int  # the same as sent in the response, micros of `cur`
    reserved_micros: int  # R
    predicted_ms: int
    take_rate_bps: int  # the exchange's fee at the time of the win
    won_ns: int
    expires_ns: int  # unbilled after this: void
    state: State = State.PENDING
    charged_micros: int = 0  # what the campaign pays now: R until trued up, 0 once void
    measured_ms: int | None = None  # from the attention beacon
    win_noticed: bool = False
    void_reason: str = ""  # "loss:<code>" or "expired"

    @property
    def attention_ms(self) -> int:
        return self.predicted_ms if self.measured_ms is None else self.measured_ms


@dataclass(frozen=True, slots=True)
class Notice:
    """A checked notice (see exchange.notices): the caller's side of a trade's life."""

    kind: str  # "win" | "bill" | "loss" | "attention"
    trade_id: str
    price: float | None = None  # CPM in `cur` (win, bill)
    cur: str = ""  # "" = the bid's currency
    loss_reason: int | None = None
    seconds: float | None = None  # measured attentive seconds (attention)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a caller hears about its notice."""

    outcome: Outcome
    state: State  # the trade's, after the notice
    message: str = ""  # why a conflict was refused


@dataclass(frozen=True, slots=True)
class Entry:
    account: str  # campaign:<id> | pending:<id> | publisher:<key> | exchange:fees
    unit: str  # micros | ms
    amount: int


@dataclass(frozen=True, slots=True)
class Posting:
    id: str  # <trade id>:<step>: a step can happen once per trade
    trade_id: str
    step: str  # reserve | post | trueup | void
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Step:
    """What one event did: the trade after it, its postings, and budget given back."""

    outcome: Outcome
    trade: Trade
    postings: tuple[Posting, ...] = ()
    released_micros: int = 0  # back to the campaign's budget for `trade.day`
    message: str = ""  # why a conflict was refused


def campaign(trade: Trade) -> str:
    return f"campaign:{trade.campaign_id}"


def pending(trade: Trade) -> str:
    return f"pending:{trade.campaign_id}"


def publisher(trade: Trade) -> str:
    return f"publisher:{trade.publisher}"


def fee(trade: Trade, charge: int) -> int:
    """The exchange's cut of a charge, rounded down (in the publisher's favour)."""
    return charge * trade.take_rate_bps // BPS


def trued_charge(trade: Trade, measured_ms: int) -> int:
    """T = R · measured / predicted, never above R."""
    return min(
        trade.reserved_micros, trade.reserved_micros * measured_ms // max(trade.predicted_ms, 1)
    )


def _posting(trade: Trade, step: str, *entries: tuple[str, str, int]) -> Posting:
    kept = tuple(Entry(a, u, n) for a, u, n in entries if n != 0)
    return Posting(f"{trade.id}:{step}", trade.id, step, kept)


def reserve(trade: Trade) -> Step:
    """The win: hold R of the campaign's budget."""
    trade = replace(trade, charged_micros=trade.reserved_micros)
    entries = reserve_entries(trade.campaign_id, trade.reserved_micros)
    return Step(Outcome.RECORDED, trade, (_posting(trade, "reserve", *entries),))


def reserve_entries(campaign_id: str, reserved: int) -> tuple[tuple[str, str, int], ...]:
    """(account, unit, amount) of a reservation: the one rule, also used by the ledger's
    bulk path, which books thousands of wins a second without building objects."""
    return (
        (f"campaign:{campaign_id}", MICROS, -reserved),
        (f"pending:{campaign_id}", MICROS, reserved),
    )


def apply(trade: Trade, notice: Notice) -> Step:
    """The trade after `notice`, with what it posts or why it is refused."""
    if notice.kind in ("win", "bill"):
        problem = _price_problem(trade, notice)
        if problem:
            return Step(Outcome.CONFLICT, trade, message=problem)
    if notice.kind == "win":  # informational: win notices are not billable
        if trade.win_noticed:
            return Step(Outcome.DUPLICATE, trade)
        return Step(Outcome.RECORDED, replace(trade, win_noticed=True))
    if notice.kind == "bill":
        return _bill(trade)
    if notice.kind == "attention":
        return _attention(trade, measured_ms(notice.seconds or 0.0))
    if notice.kind == "loss":
        return _loss(trade, notice.loss_reason)
    raise ValueError(f"unknown notice kind {notice.kind!r}")


def expire(trade: Trade, now_ns: int) -> Step | None:
    """Void a trade nobody billed before it expired; None if it is not due."""
    if trade.state is not State.PENDING or now_ns < trade.expires_ns:
        return None
    return _void(trade, "expired")


def measured_ms(seconds: float) -> int:
    return min(round(seconds * 1000), MAX_MEASURED_MS)


def _price_problem(trade: Trade, notice: Notice) -> str:
    if notice.cur and notice.cur != trade.cur:
        return f'notice.cur "{notice.cur}" is not the bid\'s currency "{trade.cur}"'
    price = round((notice.price or 0.0) * 1_000_000)
    if abs(price - trade.price_cur_micros) > PRICE_TOLERANCE_MICROS:
        return (
            f"notice.price {notice.price} is not the clearing price "
            f"{trade.price_cur_micros / 1_000_000} of bid {trade.id}"
        )
    return ""


def _bill(trade: Trade) -> Step:
    if trade.state is State.POSTED:
        return Step(Outcome.DUPLICATE, trade)
    if trade.state is State.VOID:
        return Step(
            Outcome.CONFLICT, trade, message=f"bid {trade.id} was voided ({trade.void_reason})"
        )
    r = trade.reserved_micros
    t = r if trade.measured_ms is None else trued_charge(trade, trade.measured_ms)
    cut, a = fee(trade, t), trade.attention_ms
    posted = replace(trade, state=State.POSTED, charged_micros=t)
    posting = _posting(
        posted,
        "post",
        (pending(trade), MICROS, -r),
        (publisher(trade), MICROS, t - cut),
        (FEES, MICROS, cut),
        (campaign(trade), MICROS, r - t),
        (publisher(trade), MS, -a),
        (campaign(trade), MS, a),
    )
    return Step(Outcome.RECORDED, posted, (posting,), released_micros=r - t)


def _attention(trade: Trade, ms: int) -> Step:
    if trade.measured_ms is not None:
        if trade.measured_ms == ms:
            return Step(Outcome.DUPLICATE, trade)
        return Step(
            Outcome.CONFLICT,
            trade,
            message=f"bid {trade.id} already has {trade.measured_ms} attentive ms measured",
        )
    if trade.state is State.VOID:
        return Step(
            Outcome.CONFLICT, trade, message=f"bid {trade.id} was voided ({trade.void_reason})"
        )
    measured = replace(trade, measured_ms=ms)
    if trade.state is State.PENDING:  # kept until the bill posts at the trued charge
        return Step(Outcome.RECORDED, measured)
    r, t = trade.reserved_micros, trued_charge(trade, ms)
    trued = replace(measured, charged_micros=t)
    posting = _posting(
        trued,
        "trueup",
        (publisher(trade), MICROS, -((r - fee(trade, r)) - (t - fee(trade, t)))),
        (FEES, MICROS, -(fee(trade, r) - fee(trade, t))),
        (campaign(trade), MICROS, r - t),
        (publisher(trade), MS, -(ms - trade.predicted_ms)),
        (campaign(trade), MS, ms - trade.predicted_ms),
    )
    return Step(Outcome.RECORDED, trued, (posting,), released_micros=r - t)


def _loss(trade: Trade, reason: int | None) -> Step:
    if trade.state is State.POSTED:
        return Step(
            Outcome.CONFLICT, trade, message=f"bid {trade.id} was billed: it cannot be lost"
        )
    if trade.state is State.VOID:
        return Step(Outcome.DUPLICATE, trade)
    return _void(trade, f"loss:{reason if reason is not None else 0}")


def _void(trade: Trade, reason: str) -> Step:
    r = trade.reserved_micros
    void = replace(trade, state=State.VOID, charged_micros=0, void_reason=reason)
    posting = _posting(void, "void", (pending(trade), MICROS, -r), (campaign(trade), MICROS, r))
    return Step(Outcome.RECORDED, void, (posting,), released_micros=r)


def balanced(postings: tuple[Posting, ...]) -> bool:
    """Every posting sums to zero in every unit."""
    for p in postings:
        for unit in (MICROS, MS):
            if sum(e.amount for e in p.entries if e.unit == unit) != 0:
                return False
    return True
