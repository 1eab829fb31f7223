"""Configuration: embedded defaults, optionally overridden by a TOML file.

Every key is checked: a typo or a wrong type stops start-up with a message
naming the key and what to do, rather than being silently ignored.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_type_hints

from exchange import cpus
from exchange.currency import RateTable
from exchange.redis_client import REDIS_SCHEMES


@dataclass(frozen=True)
class ServerConfig:
    grpc: str = "127.0.0.1:50051"
    http: str = "127.0.0.1:8080"
    public_url: str = ""  # base of notice URLs in bids; "" = http://<server.http>
    max_request_bytes: int = 256 * 1024
    # After warm-up, move start-up's objects (campaigns, index, model: ~245k at 10k
    # campaigns) out of the cyclic collector's reach: a full collection, rare but pausing
    # every request in flight, walked them in ~130 ms (bench.tuning). Cycles among
    # them are never freed.
    gc_freeze: bool = True
    cpus: tuple[int, ...] = ()  # pin the bid server to these CPUs (workers: one each); () = any


@dataclass(frozen=True)
class AuctionConfig:
    increment_cpm_micros: int = 10_000
    tmax_margin_ms: float = 1.0
    history_len: int = 50
    max_imps: int = 64
    max_candidates: int = 256  # per imp, the model scores at most this many (by prior bid)


@dataclass(frozen=True)
class CampaignsConfig:
    file: str = ""  # JSON or YAML; "" = the generated demo set
    demo_count: int = 400
    demo_seed: int = 7


@dataclass(frozen=True)
class StoreConfig:
    url: str = "sqlite:///var/attnx.db"  # or postgresql://user@host:5432/db
    journal: str = "var/journal"  # trades are fsynced here before a bid is answered


@dataclass(frozen=True)
class SettlementConfig:
    take_rate_bps: int = 1000  # the exchange's fee: 10% of each charge
    secret: str = ""  # notice-signing key; "" = generated once and kept in the database
    default_exp_s: int = 3600  # an unbilled trade voids this long after the win (imp.exp wins)
    max_exp_s: int = 86_400
    sweep_interval_s: float = 1.0  # how often expired trades are voided
    queue: int = 10_000  # ledger writer queue (items: journal groups, notices)
    sync_window_ms: float = 1.0  # at most one journal sync per window (a bid waits for it)
    commit_interval_ms: float = 20.0  # at most one ledger commit per interval
    # With shared state ([state] url = redis://), trades reach the ledger through the trade
    # stream: `attnx serve` starts this many ledger workers (0: run `attnx settle` elsewhere).
    ledger_workers: int = 1
    claim_idle_ms: int = 10_000  # a worker's unacknowledged trades are taken over after this
    cpus: tuple[int, ...] = ()  # pin the settlement process to these CPUs; () = any


@dataclass(frozen=True)
class ScorerConfig:
    backend: str = "onnxruntime-cpu"  # tensorrt | onnxruntime-cuda | onnxruntime-cpu | baseline
    model: str = ""  # a model directory; "" = the model shipped in inference/models/default
    threads: int = 1  # ONNX Runtime intra-op threads per process
    fp16: bool = False  # TensorRT only, and only after `attnx model check-fp16`


@dataclass(frozen=True)
class StateConfig:
    url: str = "memory"  # "memory" (one process) or "redis://host:6379/0" (shared budgets)
    prefix: str = "attnx"  # Redis key namespace: one Redis can serve several exchanges
    lease_fraction: float = 0.01  # a budget lease: this share of the daily budget
    refill_interval_ms: float = 10.0  # how often leases running low are topped up
    campaign_sync_s: float = 1.0  # how often a server picks up others' Admin changes


PACING_METHODS = ("rl", "dual", "pid", "throttle", "none")


@dataclass(frozen=True)
class PacingConfig:
    method: str = "rl"  # rl (the learned policy) | dual | pid | throttle | none
    interval_s: float = 900.0  # the control interval: the shipped policy learned 15 minutes
    policy: str = ""  # a policy directory (`attnx pacing train`); "" = the shipped one


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    auction: AuctionConfig = field(default_factory=AuctionConfig)
    campaigns: CampaignsConfig = field(default_factory=CampaignsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    settlement: SettlementConfig = field(default_factory=SettlementConfig)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    pacing: PacingConfig = field(default_factory=PacingConfig)
    state: StateConfig = field(default_factory=StateConfig)
    # Units of each currency per 1 USD.
    currency_rates: dict[str, float] = field(
        default_factory=lambda: {
            "USD": 1.0,
            "EUR": 0.92,
            "GBP": 0.79,
            "JPY": 150.0,
            "CAD": 1.37,
            "AUD": 1.52,
        }
    )

    @property
    def notice_url(self) -> str:
        return self.server.public_url or f"http://{self.server.http}"


class ConfigError(ValueError):
    pass


def _typed(value: Any, kind: Any, path: str) -> Any:
    if kind is bool or kind is str:
        if not isinstance(value, kind):
            raise ConfigError(f"{path} must be a {kind.__name__}")
        return value
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{path} must be an integer")
        return value
    if kind is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"{path} must be a number")
        return float(value)
    if kind == tuple[int, ...]:
        if not isinstance(value, list):
            raise ConfigError(f"{path} must be a list of integers, like [0, 1]")
        return tuple(_typed(v, int, f"{path}[{i}]") for i, v in enumerate(value))
    if kind == dict[str, float]:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a table")
        return {k: _typed(v, float, f"{path}.{k}") for k, v in value.items()}
    return _section(value, kind, path)


def _section(table: Any, cls: type, path: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{path} must be a table")
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    values = {}
    for key, value in table.items():
        if key not in names:
            hint = difflib.get_close_matches(key, names, n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else f" (known: {', '.join(names)})"
            raise ConfigError(f"{path}.{key} is not a known setting{suggestion}")
        values[key] = _typed(value, hints[key], f"{path}.{key}")
    return replace(cls(), **values)


def _check(config: Config) -> Config:
    for name in ("grpc", "http"):
        host, _, port = getattr(config.server, name).rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(f'config.server.{name} must be "host:port", like "127.0.0.1:8080"')
    positive = {
        "config.server.max_request_bytes": config.server.max_request_bytes,
        "config.auction.history_len": config.auction.history_len,
        "config.auction.max_imps": config.auction.max_imps,
        "config.auction.max_candidates": config.auction.max_candidates,
        "config.campaigns.demo_count": config.campaigns.demo_count,
        "config.settlement.default_exp_s": config.settlement.default_exp_s,
        "config.settlement.max_exp_s": config.settlement.max_exp_s,
        "config.settlement.sweep_interval_s": config.settlement.sweep_interval_s,
        "config.settlement.queue": config.settlement.queue,
    }
    for path, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{path} must be positive")
    st = config.settlement
    if not 0 <= st.sync_window_ms <= 100:  # every bid waits for its sync
        raise ConfigError("config.settlement.sync_window_ms must be from 0 to 100")
    if not 0 <= st.ledger_workers <= 64:
        raise ConfigError("config.settlement.ledger_workers must be from 0 to 64")
    if not 100 <= st.claim_idle_ms <= 3_600_000:
        raise ConfigError("config.settlement.claim_idle_ms must be from 100 to 3600000")
    if not 0 <= st.commit_interval_ms <= 10_000:
        raise ConfigError("config.settlement.commit_interval_ms must be from 0 to 10000")
    _check_cpus(config)
    backends = ("tensorrt", "onnxruntime-cuda", "onnxruntime-cpu", "baseline")
    if config.scorer.backend not in backends:
        raise ConfigError(f"config.scorer.backend must be one of {', '.join(backends)}")
    if config.scorer.threads <= 0:
        raise ConfigError("config.scorer.threads must be positive")
    try:
        RateTable(config.currency_rates)
    except ValueError as exc:
        raise ConfigError(f"config.currency_rates: {exc}") from None
    if not 0 <= config.settlement.take_rate_bps <= 10_000:
        raise ConfigError("config.settlement.take_rate_bps must be from 0 to 10000 (100%)")
    if config.settlement.secret and len(config.settlement.secret) < 32:
        raise ConfigError("config.settlement.secret must be at least 32 characters (or empty)")
    if not config.store.url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError(
            'config.store.url must be "sqlite:///path/to/file.db" or "postgresql://user@host/db"'
        )
    if config.state.url != "memory" and not config.state.url.startswith(REDIS_SCHEMES):
        raise ConfigError('config.state.url must be "memory" or "redis://host:port/db"')
    if not config.state.prefix or ":" in config.state.prefix:
        raise ConfigError("config.state.prefix must be a non-empty name without ':'")
    if not 0 < config.state.lease_fraction <= 1:
        raise ConfigError("config.state.lease_fraction must be in (0, 1]")
    if not 0.05 <= config.state.campaign_sync_s <= 3600:
        raise ConfigError("config.state.campaign_sync_s must be from 0.05 to 3600 seconds")
    if not 1 <= config.state.refill_interval_ms <= 10_000:
        raise ConfigError("config.state.refill_interval_ms must be from 1 to 10000")
    if config.pacing.method not in PACING_METHODS:
        raise ConfigError(f"config.pacing.method must be one of {', '.join(PACING_METHODS)}")
    if not 0.01 <= config.pacing.interval_s <= 3600:
        raise ConfigError("config.pacing.interval_s must be from 0.01 to 3600 seconds")
    if config.auction.increment_cpm_micros < 0 or config.auction.tmax_margin_ms < 0:
        raise ConfigError("config.auction.increment_cpm_micros and tmax_margin_ms must be >= 0")
    return config


def _check_cpus(config: Config) -> None:
    allowed = cpus.available()
    for section in ("server", "settlement"):
        for i, cpu in enumerate(getattr(config, section).cpus):
            path = f"config.{section}.cpus[{i}]"
            if allowed is None:
                raise ConfigError(f"{path}: this OS cannot pin processes to CPUs; remove it")
            if cpu not in allowed:
                raise ConfigError(
                    f"{path}: CPU {cpu} is not one this process may use "
                    f"({', '.join(map(str, sorted(allowed)))})"
                )


def load_config(path: Path | None = None, **overrides: Any) -> Config:
    """Defaults, then the TOML file (if any), then keyword overrides per section."""
    config = Config()
    if path is not None:
        try:
            table = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        config = _section(table, Config, "config")
    for section, values in overrides.items():
        current = getattr(config, section)
        if is_dataclass(current):
            config = replace(config, **{section: replace(current, **values)})
        else:
            config = replace(config, **{section: values})
    return _check(config)
