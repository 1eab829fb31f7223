"""Ledger reports and invariant checks, read straight from the database.

`attnx ledger report` says what each campaign bought and each publisher is owed;
`attnx ledger check` verifies what must always hold and lists every breach.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass

import orjson

from exchange.db import Connection
from exchange.settlement import FEES, MICROS, MS, State


@dataclass(frozen=True)
class CampaignLine:
    campaign: str
    trades: int  # won, not void
    billed: int
    pending: int
    void: int
    attentive_s: float  # bought: measured where the beacon came, else predicted (billed only)
    spend_usd: float  # charged on billed trades
    reserved_usd: float  # held by pending trades
    effective_acpm_usd: float  # spend per 1000 attentive seconds
    budget_usd: float | None  # daily budget, where known
    left_usd: float | None


@dataclass(frozen=True)
class PublisherLine:
    publisher: str
    billed: int
    attentive_s: float  # delivered
    payable_usd: float  # what the exchange owes: charges less its fee


def campaign_report(conn: Connection, day: int, budgets: dict[str, int]) -> list[CampaignLine]:
    rows = conn.rows(
        "SELECT campaign_id, "
        "SUM(CASE WHEN state = ? THEN 1 ELSE 0 END), SUM(CASE WHEN state = ? THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN state = ? THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN state = ? THEN COALESCE(measured_ms, predicted_ms) ELSE 0 END), "
        "SUM(CASE WHEN state = ? THEN charged_micros ELSE 0 END), "
        "SUM(CASE WHEN state = ? THEN charged_micros ELSE 0 END) "
        "FROM ledger_trades WHERE day = ? GROUP BY campaign_id ORDER BY campaign_id",
        (
            *(s.value for s in (State.POSTED, State.PENDING, State.VOID)),
            State.POSTED.value,
            State.POSTED.value,
            State.PENDING.value,
            day,
        ),
    )
    lines = []
    for campaign, billed, pending, void, ms, spend, reserved in rows:
        budget = budgets.get(campaign)
        lines.append(
            CampaignLine(
                campaign=campaign,
                trades=int(billed + pending),
                billed=int(billed),
                pending=int(pending),
                void=int(void),
                attentive_s=int(ms) / 1000,
                spend_usd=int(spend) / 1e6,
                reserved_usd=int(reserved) / 1e6,
                effective_acpm_usd=round(int(spend) / int(ms), 6) if ms else 0.0,
                budget_usd=None if budget is None else budget / 1e6,
                left_usd=None if budget is None else (budget - int(spend) - int(reserved)) / 1e6,
            )
        )
    return lines


def publisher_report(conn: Connection, day: int) -> list[PublisherLine]:
    rows = conn.rows(
        "SELECT e.account, COUNT(DISTINCT CASE WHEN p.step = 'post' THEN p.trade_id END), "
        "SUM(CASE WHEN e.unit = ? THEN -e.amount ELSE 0 END), "
        "SUM(CASE WHEN e.unit = ? THEN e.amount ELSE 0 END) "
        "FROM entries e JOIN postings p ON p.id = e.posting_id "
        "JOIN ledger_trades t ON t.id = p.trade_id "
        "WHERE t.day = ? AND e.account LIKE 'publisher:%' GROUP BY e.account ORDER BY e.account",
        (MS, MICROS, day),
    )
    return [
        PublisherLine(account.removeprefix("publisher:"), int(n), int(ms) / 1000, int(m) / 1e6)
        for account, n, ms, m in rows
    ]


def render(lines: list, fmt: str) -> str:
    """A list of report lines as an aligned table, CSV or JSON."""
    dicts = [asdict(line) for line in lines]
    if fmt == "json":
        return orjson.dumps(dicts, option=orjson.OPT_INDENT_2).decode()
    if not dicts:
        return "(nothing)"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(dicts[0]))
        writer.writeheader()
        writer.writerows(dicts)
        return out.getvalue().rstrip("\n")
    cells = [list(dicts[0])] + [[_cell(v) for v in d.values()] for d in dicts]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells
    )


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.6f}".rstrip("0").rstrip(".") if value else "0"
    return str(value)


def check(conn: Connection, budgets: dict[tuple[str, int], int] | None = None) -> list[str]:
    """Every breach of the ledger's invariants, as sentences; empty when all hold.

    `budgets` maps (campaign, day) to that day's budget where known."""
    breaches = []
    for posting, unit, total in conn.rows(
        "SELECT posting_id, unit, SUM(amount) FROM entries GROUP BY posting_id, unit "
        "HAVING SUM(amount) <> 0"
    ):
        breaches.append(f"posting {posting} does not balance in {unit}: off by {total}")
    for unit, total in conn.rows("SELECT unit, SUM(amount) FROM entries GROUP BY unit"):
        if int(total) != 0:
            breaches.append(f"the ledger does not sum to zero in {unit}: {total}")
    for trade, state, reserved, charged in conn.rows(
        "SELECT id, state, reserved_micros, charged_micros FROM ledger_trades "
        "WHERE charged_micros < 0 OR charged_micros > reserved_micros "
        "OR (state = ? AND charged_micros <> 0) "
        "OR (state = ? AND charged_micros <> reserved_micros)",
        (State.VOID.value, State.PENDING.value),
    ):
        breaches.append(f"trade {trade} ({state}) charges {charged} of {reserved} reserved")
    expected_steps = {State.PENDING: {"reserve"}, State.VOID: {"reserve", "void"}}
    steps: dict[str, set[str]] = {}
    for trade, step in conn.rows("SELECT trade_id, step FROM postings"):
        steps.setdefault(trade, set()).add(step)
    for trade, state, measured in conn.rows("SELECT id, state, measured_ms FROM ledger_trades"):
        have = steps.get(trade, set())
        want = expected_steps.get(state)
        ok = have == want if want else {"reserve", "post"} <= have <= {"reserve", "post", "trueup"}
        if not ok:
            breaches.append(f"trade {trade} ({state}) has postings {sorted(have)}")
        if "trueup" in have and measured is None:
            breaches.append(f"trade {trade} was trued up without a measurement")
    breaches += _account_breaches(conn)
    for (campaign, day), budget in (budgets or {}).items():
        row = conn.one(
            "SELECT SUM(charged_micros) FROM ledger_trades WHERE campaign_id = ? AND day = ?",
            (campaign, day),
        )
        spent = int(row[0] or 0)
        if spent > budget:
            breaches.append(f"campaign {campaign} spent {spent} of a {budget} budget on day {day}")
    return breaches


def _account_breaches(conn: Connection) -> list[str]:
    """Account balances must equal what the trades say they should."""
    balance = {
        (account, unit): int(total)
        for account, unit, total in conn.rows(
            "SELECT account, unit, SUM(amount) FROM entries GROUP BY account, unit"
        )
    }
    breaches = []
    for campaign, charged, held in conn.rows(
        "SELECT campaign_id, SUM(charged_micros), "
        "SUM(CASE WHEN state = ? THEN reserved_micros ELSE 0 END) "
        "FROM ledger_trades GROUP BY campaign_id",
        (State.PENDING.value,),
    ):
        got = balance.get((f"campaign:{campaign}", MICROS), 0)
        if got != -int(charged):
            breaches.append(f"account campaign:{campaign} holds {got}, its trades say {-charged}")
        got = balance.get((f"pending:{campaign}", MICROS), 0)
        if got != int(held):
            breaches.append(f"account pending:{campaign} holds {got}, its pending trades {held}")
    fees = balance.get((FEES, MICROS), 0)
    if fees < 0:
        breaches.append(f"account {FEES} is negative: {fees}")
    return breaches
