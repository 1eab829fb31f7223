"""The ledger's tables: trades, their postings and entries, read and written in SQL.

Every function runs inside the caller's transaction (the ledger worker's), so a
step's trade update, postings, entries and notice record commit together or not
at all. A posting's id is `<trade id>:<step>`, so a step cannot be booked twice
even if the code above it were wrong.
"""

from __future__ import annotations

from dataclasses import fields, replace
from operator import attrgetter

from exchange.db import Connection
from exchange.settlement import Outcome, Posting, State, Step, Trade, reserve_entries

COLUMNS = tuple(f.name for f in fields(Trade))  # the table's column order
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM ledger_trades"
WON = COLUMNS[: COLUMNS.index("state")]  # what the win fixes (the journal's record); then
won_fields = attrgetter(*WON)  # Trade -> that tuple
_ID, _CAMPAIGN, _DAY, _RESERVED = (
    WON.index(c) for c in ("id", "campaign_id", "day", "reserved_micros")
)
_IN_CHUNK = 500  # ids per IN (...) query


_ROW = attrgetter(*COLUMNS)


def to_row(trade: Trade) -> tuple:
    return _ROW(replace(trade, state=trade.state.value, win_noticed=int(trade.win_noticed)))


def from_row(row: tuple) -> Trade:
    trade = Trade(*row)
    return replace(trade, state=State(trade.state), win_noticed=bool(trade.win_noticed))


def insert_trades(conn: Connection, trades: list[list], now_ns: int) -> list[list]:
    """Book won trades (as the journal holds them: WON values) with their reservations;
    returns those already booked (a retried request that won again: its second
    reservation must be given back). Rows are built as tuples, not objects: this is
    the path every win takes."""
    known: set[str] = set()
    for i in range(0, len(trades), _IN_CHUNK):
        ids = [t[_ID] for t in trades[i : i + _IN_CHUNK]]
        q = f"SELECT id FROM ledger_trades WHERE id IN ({', '.join('?' * len(ids))})"
        known.update(trade_id for (trade_id,) in conn.rows(q, ids))
    rows, postings, entries, repeated = [], [], [], []
    for t in trades:
        trade_id, reserved = t[_ID], t[_RESERVED]
        if trade_id in known:
            repeated.append(t)
            continue
        known.add(trade_id)
        rows.append((*t, State.PENDING.value, reserved, None, 0, ""))
        posting = f"{trade_id}:reserve"
        postings.append((posting, trade_id, "reserve", now_ns))
        entries += [(posting, *e) for e in reserve_entries(t[_CAMPAIGN], reserved)]
    conn.insert_many("ledger_trades", rows)
    conn.insert_many("postings", postings)
    conn.insert_many("entries", entries)
    return repeated


def reservation(won: list) -> tuple[str, int, int]:
    """(campaign, day, micros) a won trade's record reserved."""
    return won[_CAMPAIGN], won[_DAY], won[_RESERVED]


def write_postings(conn: Connection, postings: list[Posting], now_ns: int) -> None:
    conn.insert_many("postings", [(p.id, p.trade_id, p.step, now_ns) for p in postings])
    conn.insert_many(
        "entries", [(p.id, e.account, e.unit, e.amount) for p in postings for e in p.entries]
    )


def load_trade(conn: Connection, trade_id: str) -> Trade | None:
    row = conn.one(f"{_SELECT} WHERE id = ?{conn.for_update}", (trade_id,))
    return None if row is None else from_row(row)


def write_step(conn: Connection, step: Step, kind: str, detail: str, now_ns: int) -> None:
    """Record what one notice or expiry did: the trade's new state and its postings,
    and the notice itself (duplicates and conflicts too: the audit trail)."""
    t = step.trade
    if step.outcome is Outcome.RECORDED:
        conn.execute(
            "UPDATE ledger_trades SET state = ?, charged_micros = ?, measured_ms = ?, "
            "win_noticed = ?, void_reason = ? WHERE id = ?",
            (
                t.state.value,
                t.charged_micros,
                t.measured_ms,
                int(t.win_noticed),
                t.void_reason,
                t.id,
            ),
        )
        write_postings(conn, list(step.postings), now_ns)
    conn.execute(
        "INSERT INTO ledger_notices VALUES (?, ?, ?, ?, ?)",
        (t.id, kind, step.outcome.value, detail, now_ns),
    )


def due_trades(conn: Connection, now_ns: int, limit: int) -> list[Trade]:
    """Pending trades past their expiry, oldest first, locked: settlers sharing a ledger
    each void a different part, never the same trade twice."""
    q = f"{_SELECT} WHERE state = ? AND expires_ns <= ? ORDER BY expires_ns LIMIT ?"
    q += conn.skip_locked
    return [from_row(r) for r in conn.rows(q, (State.PENDING.value, now_ns, limit))]


def spend_for_day(conn: Connection, day: int) -> dict[str, int]:
    """What each campaign has committed today (reserved or charged): its budget's use."""
    q = "SELECT campaign_id, SUM(charged_micros) FROM ledger_trades WHERE day = ? GROUP BY 1"
    return {campaign_id: int(micros) for campaign_id, micros in conn.rows(q, (day,))}


def journal_mark(conn: Connection, journal_id: str) -> int:
    """The last journal record this ledger holds (replay starts after it)."""
    row = conn.one("SELECT seq FROM journal_marks WHERE journal = ?", (journal_id,))
    return 0 if row is None else int(row[0])


def set_journal_mark(conn: Connection, journal_id: str, seq: int) -> None:
    conn.execute(
        "INSERT INTO journal_marks VALUES (?, ?) "
        "ON CONFLICT (journal) DO UPDATE SET seq = excluded.seq",
        (journal_id, seq),
    )


def ensure_journal_mark(conn: Connection, journal_id: str) -> int:
    """The journal's mark, creating its row (0) so that stream bookers can lock it."""
    conn.execute(
        "INSERT INTO journal_marks VALUES (?, 0) ON CONFLICT (journal) DO NOTHING", (journal_id,)
    )
    return journal_mark(conn, journal_id)


def claim_records(conn: Connection, records: list[tuple[str, int]]) -> set[tuple[str, int]]:
    """Of these (journal, seq) records from the trade stream, the ones never booked before,
    claimed in this transaction: a record delivered twice (a reclaimed entry, a re-shipped
    journal) is booked once. A record at or below its journal's mark was booked and
    compacted away; the mark's row is share-locked so compaction cannot slip in between."""
    journals = sorted({journal for journal, _ in records})
    marks = {}
    for journal in journals:  # in one order: two bookers never wait on each other in a cycle
        q = f"SELECT seq FROM journal_marks WHERE journal = ?{conn.for_share}"
        row = conn.one(q, (journal,))
        marks[journal] = 0 if row is None else int(row[0])
    fresh = sorted({(j, s) for j, s in records if s > marks[j]})
    claimed: set[tuple[str, int]] = set()
    for i in range(0, len(fresh), _IN_CHUNK):
        chunk = fresh[i : i + _IN_CHUNK]
        values = ", ".join(["(?, ?)"] * len(chunk))
        q = (
            f"INSERT INTO stream_booked VALUES {values} "
            "ON CONFLICT (journal, seq) DO NOTHING RETURNING journal, seq"
        )
        claimed.update((j, int(s)) for j, s in conn.rows(q, [x for pair in chunk for x in pair]))
    return claimed


def advance_stream_mark(conn: Connection, journal_id: str, mark: int) -> int:
    """Move the journal's mark over the records booked from the stream right after it
    (they may be booked in any order), and forget them: returns the new mark."""
    q = "SELECT seq FROM stream_booked WHERE journal = ? AND seq > ? ORDER BY seq LIMIT 100000"
    new = mark
    for (seq,) in conn.rows(q, (journal_id, mark)):
        if seq != new + 1:
            break
        new = seq
    if new > mark:
        set_journal_mark(conn, journal_id, new)
        conn.execute("DELETE FROM stream_booked WHERE journal = ? AND seq <= ?", (journal_id, new))
    return new


def setting(conn: Connection, key: str, default: str) -> str:
    """A stored setting, storing `default` the first time (first writer wins)."""
    conn.execute("INSERT INTO settings VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, default))
    return conn.one("SELECT value FROM settings WHERE key = ?", (key,))[0]
