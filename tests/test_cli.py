"""The `attnx` command line: the example request, sending it, and clear failures."""

import subprocess
import sys

import orjson

from exchange.currency import RateTable
from exchange.decode_json import decode_json
from exchange.validate import validate


def attnx(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "exchange", *args], capture_output=True, text=True, timeout=timeout
    )


def test_example_is_a_valid_openrtb_request():
    out = attnx("example")
    assert out.returncode == 0, out.stderr
    body = orjson.loads(out.stdout)
    validate(decode_json(orjson.dumps(body)), RateTable({"USD": 1.0}))


def test_bid_without_a_server_says_what_to_do():
    out = attnx("bid", "--example", "--target", "127.0.0.1:1")
    assert out.returncode != 0
    assert "no exchange answered; start one with `make run`" in out.stderr


def test_bid_with_a_broken_file_names_it(tmp_path):
    path = tmp_path / "req.json"
    path.write_text("{not json")
    out = attnx("bid", "--file", str(path))
    assert out.returncode != 0 and f"{path} is not valid JSON" in out.stderr


def test_serve_with_a_bad_config_names_the_key(tmp_path):
    path = tmp_path / "attnx.toml"
    path.write_text("[auction]\nmax_imp = 3\n")
    out = attnx("serve", "--config", str(path))
    assert out.returncode != 0
    assert "config.auction.max_imp is not a known setting (did you mean max_imps?)" in out.stderr


def test_serve_with_a_bad_campaigns_file_names_the_field(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(
        '[{"id": "a", "advertiser": "A", "seat": "s", "adomain": ["a.example"],'
        ' "acpm_micros": -1, "daily_budget_micros": 5, "creatives": []}]'
    )
    out = attnx("serve", "--campaigns", str(path), "--db", str(tmp_path / "x.db"))
    assert out.returncode != 0
    assert "campaigns[0].creatives must not be empty" in out.stderr


def test_campaigns_demo_writes_a_loadable_file(tmp_path):
    from exchange.campaign_io import load_campaigns

    path = tmp_path / "demo.yaml"
    out = attnx("campaigns", "demo", "--out", str(path), "--n", "25")
    assert out.returncode == 0, out.stderr
    assert len(load_campaigns(path)) == 25
