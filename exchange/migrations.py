"""The database schema as numbered migrations; `exchange.db.migrate` applies the missing ones.

Written in the SQL that SQLite and PostgreSQL share (BIGINT, TEXT). Never edit a
migration that has shipped: add the next one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS = (
    Migration(
        1,
        "trades, notices and Admin's campaigns (before the ledger)",
        (
            """CREATE TABLE IF NOT EXISTS trades (
                id TEXT PRIMARY KEY,
                request_id TEXT NOT NULL,
                imp_id TEXT NOT NULL,
                campaign_id TEXT NOT NULL,
                day BIGINT NOT NULL,
                price_cpm_micros BIGINT NOT NULL,
                charge_micros BIGINT NOT NULL,
                cur TEXT NOT NULL,
                created_ns BIGINT NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS trades_by_day ON trades (day, campaign_id)",
            """CREATE TABLE IF NOT EXISTS notices (
                bid_id TEXT NOT NULL REFERENCES trades (id),
                type TEXT NOT NULL,
                price_cpm_micros BIGINT,
                loss_reason BIGINT,
                received_ns BIGINT NOT NULL,
                PRIMARY KEY (bid_id, type)
            )""",
            """CREATE TABLE IF NOT EXISTS campaigns (
                id TEXT PRIMARY KEY,
                body TEXT NOT NULL,
                updated_ns BIGINT NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "the double-entry ledger (trades keep their life; postings and entries their money)",
        (
            "ALTER TABLE trades RENAME TO legacy_trades",
            "ALTER TABLE notices RENAME TO legacy_notices",
            """CREATE TABLE ledger_trades (
                id TEXT PRIMARY KEY,
                request_id TEXT NOT NULL,
                imp_id TEXT NOT NULL,
                campaign_id TEXT NOT NULL,
                publisher TEXT NOT NULL,
                day BIGINT NOT NULL,
                cur TEXT NOT NULL,
                price_cpm_micros BIGINT NOT NULL,
                price_cur_micros BIGINT NOT NULL,
                reserved_micros BIGINT NOT NULL,
                predicted_ms BIGINT NOT NULL,
                take_rate_bps BIGINT NOT NULL,
                won_ns BIGINT NOT NULL,
                expires_ns BIGINT NOT NULL,
                state TEXT NOT NULL,
                charged_micros BIGINT NOT NULL,
                measured_ms BIGINT,
                win_noticed BIGINT NOT NULL,
                void_reason TEXT NOT NULL
            )""",
            "CREATE INDEX ledger_trades_due ON ledger_trades (state, expires_ns)",
            "CREATE INDEX ledger_trades_day ON ledger_trades (day, campaign_id)",
            """CREATE TABLE postings (
                id TEXT PRIMARY KEY,
                trade_id TEXT NOT NULL REFERENCES ledger_trades (id),
                step TEXT NOT NULL,
                created_ns BIGINT NOT NULL
            )""",
            """CREATE TABLE entries (
                posting_id TEXT NOT NULL REFERENCES postings (id),
                account TEXT NOT NULL,
                unit TEXT NOT NULL,
                amount BIGINT NOT NULL,
                PRIMARY KEY (posting_id, account, unit)
            )""",
            "CREATE INDEX entries_by_account ON entries (account, unit)",
            """CREATE TABLE ledger_notices (
                trade_id TEXT NOT NULL REFERENCES ledger_trades (id),
                kind TEXT NOT NULL,
                outcome TEXT NOT NULL,
                detail TEXT NOT NULL,
                received_ns BIGINT NOT NULL
            )""",
            "CREATE INDEX ledger_notices_by_trade ON ledger_notices (trade_id)",
            """CREATE TABLE journal_marks (
                journal TEXT PRIMARY KEY,
                seq BIGINT NOT NULL
            )""",
            """CREATE TABLE settings (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        3,
        "journal records booked from the trade stream (exactly once, in any order)",
        (
            """CREATE TABLE stream_booked (
                journal TEXT NOT NULL,
                seq BIGINT NOT NULL,
                PRIMARY KEY (journal, seq)
            )""",
        ),
    ),
)
