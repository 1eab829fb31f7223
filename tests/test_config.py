"""Configuration: defaults, TOML overrides, and errors that name the key."""

from pathlib import Path

import pytest

from exchange.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "attnx.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file():
    config = load_config()
    assert config.server.grpc == "127.0.0.1:50051"
    assert config.notice_url == "http://127.0.0.1:8080"
    assert config.currency_rates["USD"] == 1.0


def test_file_overrides_part_of_a_section(tmp_path):
    config = load_config(
        write(tmp_path, '[server]\nhttp = "0.0.0.0:9000"\n[currency_rates]\nUSD = 1.0\nCHF = 0.9\n')
    )
    assert config.server.http == "0.0.0.0:9000"
    assert config.server.grpc == "127.0.0.1:50051"
    assert config.currency_rates == {"USD": 1.0, "CHF": 0.9}


def test_keyword_overrides_win(tmp_path):
    config = load_config(
        write(tmp_path, '[store]\nurl = "sqlite:///a.db"\n'), store={"url": "sqlite:///b.db"}
    )
    assert config.store.url == "sqlite:///b.db"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[server]\ngprc = 'x:1'\n",
            "config.server.gprc is not a known setting (did you mean grpc?)",
        ),
        ("[serve]\n", "config.serve is not a known setting (did you mean server?)"),
        ("[auction]\nmax_imps = 'ten'\n", "config.auction.max_imps must be an integer"),
        ("[auction]\nmax_imps = 0\n", "config.auction.max_imps must be positive"),
        ("[server]\nhttp = 'localhost'\n", 'config.server.http must be "host:port"'),
        ("[currency_rates]\nUSD = 'one'\n", "config.currency_rates.USD must be a number"),
        ("server = 3\n", "config.server must be a table"),
        ("[currency_rates]\nEUR = 0.9\n", "config.currency_rates: currency rates must include USD"),
        ("[server\n", "is not valid TOML"),
        ("[store]\nurl = 'mysql://x'\n", 'config.store.url must be "sqlite:///path/to/file.db"'),
        ("[store]\nsqlite = 'a.db'\n", "config.store.sqlite is not a known setting"),
        ("[settlement]\ntake_rate_bps = 20000\n", "config.settlement.take_rate_bps must be"),
        ("[settlement]\nsecret = 'short'\n", "config.settlement.secret must be at least 32"),
        ("[settlement]\nqueue = 0\n", "config.settlement.queue must be positive"),
        (
            "[settlement]\nsync_window_ms = -1\n",
            "config.settlement.sync_window_ms must be from 0 to 100",
        ),
        (
            "[settlement]\ncommit_interval_ms = 1e6\n",
            "config.settlement.commit_interval_ms must be from 0 to 10000",
        ),
        ("[state]\nurl = 'postgres://x'\n", 'config.state.url must be "memory" or "redis://'),
        ("[state]\nprefix = 'a:b'\n", "config.state.prefix must be a non-empty name"),
        ("[state]\nlease_fraction = 0\n", "config.state.lease_fraction must be in (0, 1]"),
        ("[state]\nrefill_interval_ms = 0\n", "config.state.refill_interval_ms must be from 1"),
        ("[pacing]\nmethod = 'greedy'\n", "config.pacing.method must be one of rl, dual"),
        ("[server]\ncpus = 0\n", "config.server.cpus must be a list of integers, like [0, 1]"),
        ("[server]\ncpus = ['a']\n", "config.server.cpus[0] must be an integer"),
        (
            "[settlement]\ncpus = [0, 4096]\n",
            "config.settlement.cpus[1]: CPU 4096 is not one this process may use",
        ),
    ],
)
def test_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert message in str(err.value)


def test_cpus_are_a_tuple_of_the_cpus_given(tmp_path):
    config = load_config(write(tmp_path, "[server]\ncpus = [0]\n[settlement]\ncpus = [0]\n"))
    assert config.server.cpus == (0,) and config.settlement.cpus == (0,)


def test_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
