"""`attnx`: serve the exchange, send a bid request, manage campaigns.

attnx serve [--config attnx.toml] [--grpc HOST:PORT] [--http HOST:PORT] [--workers N]
attnx settle --config attnx.toml [--workers M]  # book the trade stream (shared state)
attnx example                       # print an example OpenRTB request (JSON)
attnx bid --example | --file F      # send one over gRPC, print the response
attnx campaigns list | get ID | pause ID | resume ID | upsert FILE
attnx campaigns demo --out FILE     # write the generated demo set
attnx pacing train [--generations N] [--ship]   # learn the pacing policy in the simulator
attnx pacing eval [--policy DIR] [--plot F]     # every method on held-out days
attnx pacing show                               # a running exchange's pacing
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from exchange.config import Config
    from exchange.ledger_worker import LedgerWorkers

DEFAULT_TARGET = "127.0.0.1:50051"


def _serve(args: argparse.Namespace) -> None:
    from exchange.config import ConfigError, load_config
    from exchange.errors import BadRequest
    from exchange.server import run

    overrides: dict[str, dict] = {}
    for section, key, value in (
        ("server", "grpc", args.grpc),
        ("server", "http", args.http),
        ("campaigns", "file", args.campaigns),
        ("store", "url", _db_url(args.db)),
        ("store", "journal", args.journal),
    ):
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    try:
        config = load_config(args.config, **overrides)
        ledger_workers = _start_ledger_workers(config, config.settlement.ledger_workers)
        try:
            if args.workers != 1:
                from exchange.workers import run_workers

                sys.exit(run_workers(config, args.workers, args.ports_file))
            run(config, args.ports_file)
        finally:  # after the bid servers: their last trades are in the stream
            if ledger_workers is not None:
                ledger_workers.stop()
    except (ConfigError, BadRequest, OSError) as exc:
        sys.exit(f"attnx: {exc}")
    except KeyboardInterrupt:
        pass


def _start_ledger_workers(config: Config, count: int) -> LedgerWorkers | None:
    """With shared state, the ledger workers that book the trade stream (None without)."""
    if config.state.url == "memory" or count == 0:
        return None
    from exchange.db import Database
    from exchange.ledger_worker import LedgerWorkers, worker_args

    Database(config.store.url).migrate()
    s, st = config.state, config.settlement
    args = worker_args(config.store.url, s.url, s.prefix, st.claim_idle_ms, st.commit_interval_ms)
    workers = LedgerWorkers(args, count)
    workers.start()
    return workers


def _settle(args: argparse.Namespace) -> None:
    import signal
    import threading

    from exchange.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        sys.exit(f"attnx: {exc}")
    if config.state.url == "memory":
        sys.exit('attnx settle books the trade stream: set [state] url = "redis://host:6379/0"')
    if args.workers < 1:
        sys.exit("attnx: --workers must be at least 1")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    workers = _start_ledger_workers(config, args.workers)
    print(f"{args.workers} ledger workers booking {config.state.url} into {config.store.url}; "
          "Ctrl-C drains and stops them", file=sys.stderr)  # fmt: skip
    stop.wait()
    workers.stop()


def _db_url(db: str | None) -> str | None:
    """`--db`: a URL as is, or a SQLite file path."""
    if db is None or "://" in db:
        return db
    return f"sqlite:///{db}"


def _ledger(args: argparse.Namespace) -> None:
    from exchange.app import campaign_set
    from exchange.config import ConfigError, load_config
    from exchange.db import Database, DatabaseError
    from exchange.reports import campaign_report, check, publisher_report, render
    from exchange.state import utc_day

    try:
        overrides: dict[str, dict] = {}
        if args.db:
            overrides["store"] = {"url": _db_url(args.db)}
        if args.campaigns:
            overrides["campaigns"] = {"file": args.campaigns}
        config = load_config(args.config, **overrides)
        db = Database(config.store.url)
        db.migrate()
        with db.connect() as conn:
            saved = [b for (b,) in conn.rows("SELECT body FROM campaigns ORDER BY id")]
            budgets = {c.id: c.daily_budget_micros for c in campaign_set(config, saved)}
            if args.action == "check":
                days = [d for (d,) in conn.rows("SELECT DISTINCT day FROM ledger_trades")]
                per_day = {(c, d): b for c, b in budgets.items() for d in days}
                breaches = check(conn, per_day)
                for breach in breaches:
                    print(f"BREACH: {breach}")
                trades = conn.one("SELECT COUNT(*) FROM ledger_trades")[0]
                print(f"{trades} trades checked: {len(breaches)} breaches")
                sys.exit(1 if breaches else 0)
            day = args.day if args.day is not None else utc_day()
            campaigns, publishers = campaign_report(conn, day, budgets), publisher_report(conn, day)
    except (ConfigError, DatabaseError) as exc:
        sys.exit(f"attnx: {exc}")
    if args.format == "json":
        report = {"day": day, "campaigns": campaigns, "publishers": publishers}
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    print(f"day {day}: campaigns")
    print(render(campaigns, args.format))
    print(f"\nday {day}: publishers")
    print(render(publishers, args.format))


def _rpc(call, *args):
    import grpc

    try:
        return call(*args, timeout=10)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            sys.exit("attnx: no exchange answered; start one with `make run` or `attnx serve`")
        sys.exit(f"attnx: {exc.code().name}: {exc.details()}")


def _print_message(message) -> None:
    from google.protobuf import json_format

    body = json_format.MessageToDict(message, preserving_proto_field_name=True)
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")


def _example(args: argparse.Namespace) -> None:
    from exchange.example import example_request

    print(orjson.dumps(example_request(), option=orjson.OPT_INDENT_2).decode())


def _bid(args: argparse.Namespace) -> None:
    import grpc
    from google.protobuf import json_format

    from exchange.example import example_request
    from protos.attnx.v1 import exchange_pb2_grpc, openrtb_pb2

    if args.example:
        body = example_request()
    else:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            sys.exit(f"attnx: {args.file} is not valid JSON: {exc}")
    try:
        request = json_format.ParseDict(body, openrtb_pb2.BidRequest(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        sys.exit(f"attnx: the request does not fit OpenRTB 2.6: {exc}")
    with grpc.insecure_channel(args.target) as channel:
        response = _rpc(exchange_pb2_grpc.ExchangeStub(channel).Bid, request)
    _print_message(response)


def _campaigns(args: argparse.Namespace) -> None:
    if args.action == "demo":
        from exchange.campaign_io import save_campaigns
        from exchange.demo import demo_campaigns

        campaigns = demo_campaigns(args.n, args.seed)
        save_campaigns(Path(args.out), campaigns)
        print(f"wrote {len(campaigns)} campaigns to {args.out}")
        return

    import grpc

    from exchange.campaign_io import campaign_to_proto, load_campaigns
    from exchange.errors import BadRequest
    from protos.attnx.v1 import admin_pb2, admin_pb2_grpc

    with grpc.insecure_channel(args.target) as channel:
        admin = admin_pb2_grpc.AdminStub(channel)
        if args.action == "list":
            token = ""
            while True:
                page = _rpc(admin.ListCampaigns, admin_pb2.ListCampaignsRequest(page_token=token))
                for s in page.campaigns:
                    c = s.campaign
                    state = "paused" if c.paused else "active"
                    print(
                        f"{c.id:<28} {state:<7} aCPM ${c.acpm_micros / 1e6:>8.3f}  "
                        f"spent ${s.spent_today_micros / 1e6:>10.2f} of "
                        f"${c.daily_budget_micros / 1e6:>10.2f}"
                    )
                token = page.next_page_token
                if not token:
                    return
        if args.action == "upsert":
            try:
                campaigns = load_campaigns(Path(args.arg))
            except BadRequest as exc:
                sys.exit(f"attnx: {exc}")
            for campaign in campaigns:
                _rpc(admin.UpsertCampaign, campaign_to_proto(campaign))
            print(f"upserted {len(campaigns)} campaigns")
            return
        call = {
            "get": admin.GetCampaign,
            "pause": admin.PauseCampaign,
            "resume": admin.ResumeCampaign,
        }[args.action]
        _print_message(_rpc(call, admin_pb2.CampaignRef(id=args.arg)))


def _train(args: argparse.Namespace) -> None:
    try:
        from inference import train
    except ImportError as exc:
        sys.exit(
            f"attnx: training needs torch ({exc}); install it with `pip install -e '.[train]'`"
        )
    import shutil

    from inference.runtime import DEFAULT_MODEL

    chosen = {
        "seed": args.seed,
        "train_impressions": args.impressions,
        "max_epochs": args.epochs,
        "threads": args.threads,
    }
    config = train.TrainConfig(**{k: v for k, v in chosen.items() if v is not None})
    path = train.run(Path(args.out), config)
    if args.ship:
        shutil.rmtree(DEFAULT_MODEL, ignore_errors=True)
        shutil.copytree(path, DEFAULT_MODEL, ignore=shutil.ignore_patterns("trt-cache"))
        print(f"shipped as {DEFAULT_MODEL}")


def _model(args: argparse.Namespace) -> None:
    if args.action == "check-fp16":
        from inference.evaluate import check_fp16
        from inference.runtime import BackendUnavailable

        try:
            result = check_fp16(Path(args.path))
        except BackendUnavailable as exc:
            sys.exit(f"attnx: the FP16 check needs TensorRT: {exc}")
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return

    import grpc

    from protos.attnx.v1 import admin_pb2, admin_pb2_grpc

    with grpc.insecure_channel(args.target) as channel:
        admin = admin_pb2_grpc.AdminStub(channel)
        if args.action == "show":
            _print_message(_rpc(admin.GetModel, admin_pb2.GetModelRequest()))
        else:
            path = str(Path(args.path).resolve())
            request = admin_pb2.SwapModelRequest(path=path, backend=args.backend)
            _print_message(_rpc(admin.SwapModel, request))


def _pacing(args: argparse.Namespace) -> None:
    if args.action == "show":
        import grpc

        from protos.attnx.v1 import admin_pb2, admin_pb2_grpc

        with grpc.insecure_channel(args.target) as channel:
            admin = admin_pb2_grpc.AdminStub(channel)
            token = ""
            while True:
                page = _rpc(admin.GetPacing, admin_pb2.GetPacingRequest(page_token=token))
                if not token:
                    version = f" (policy {page.policy_version})" if page.policy_version else ""
                    print(f"pacing: {page.method}{version}, every {page.interval_s:g} s")
                for s in page.campaigns:
                    c = s.campaign
                    print(
                        f"{c.id:<28} multiplier {s.multiplier:>7.4f}  pass {s.pass_rate:>6.4f}  "
                        f"spent ${s.spent_today_micros / 1e6:>10.2f} of "
                        f"${c.daily_budget_micros / 1e6:>10.2f}"
                    )
                token = page.next_page_token
                if not token:
                    return
    if args.action == "train":
        _pacing_train(args)
        return
    from exchange.market import Market, MarketConfig
    from exchange.pacers import DEFAULT_POLICY
    from exchange.pacing_eval import evaluate, methods, plot, table

    try:
        pacers = methods(Path(args.policy) if args.policy else DEFAULT_POLICY)
    except (OSError, ValueError) as exc:
        sys.exit(f"attnx: cannot load the pacing policy: {exc}")
    market = Market(MarketConfig(impressions_per_day=args.impressions, campaigns=args.campaigns))
    evaluation = evaluate(market, pacers, days=args.days)
    print(table(evaluation.results))
    if args.plot:
        print(f"wrote {plot(evaluation.curves, Path(args.plot))}")


def _pacing_train(args: argparse.Namespace) -> None:
    try:
        from exchange import pacing_train
    except ImportError as exc:
        sys.exit(
            f"attnx: training needs torch ({exc}); install it with `pip install -e '.[train]'`"
        )
    import shutil

    from exchange.market import MarketConfig
    from exchange.pacers import DEFAULT_POLICY

    chosen = {"seed": args.seed, "generations": args.generations}
    config = pacing_train.PacingTrainConfig(
        **{k: v for k, v in chosen.items() if v is not None},
        market=MarketConfig(impressions_per_day=args.impressions, campaigns=args.campaigns),
    )
    path = pacing_train.train(config, Path(args.out))
    print(f"wrote {path}")
    if args.ship:
        shutil.rmtree(DEFAULT_POLICY, ignore_errors=True)
        shutil.copytree(path, DEFAULT_POLICY)
        print(f"shipped as {DEFAULT_POLICY}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="attnx", description="AttnX, a real-time attention exchange")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the exchange (gRPC + HTTP)")
    serve.add_argument("--config", type=Path, help="TOML file; defaults are embedded")
    serve.add_argument("--grpc", help="gRPC listen address, host:port")
    serve.add_argument("--http", help="HTTP listen address, host:port")
    serve.add_argument("--campaigns", help="campaigns file (JSON or YAML)")
    serve.add_argument("--db", help="ledger database: a SQLite file or a postgresql:// URL")
    serve.add_argument("--journal", help="trade journal folder (default var/journal)")
    serve.add_argument(
        "--workers", type=int, default=1, help="bid-server processes on the same ports (1)"
    )
    serve.add_argument("--ports-file", type=Path, help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)

    settle = sub.add_parser(
        "settle", help="book the trade stream into the ledger (shared state: Redis)"
    )
    settle.add_argument("--config", type=Path, help="TOML file with [state] and [store]")
    settle.add_argument("--workers", type=int, default=1, help="ledger worker processes (1)")
    settle.set_defaults(func=_settle)

    example = sub.add_parser("example", help="print an example OpenRTB 2.6 bid request")
    example.set_defaults(func=_example)

    bid = sub.add_parser("bid", help="send a bid request over gRPC and print the response")
    source = bid.add_mutually_exclusive_group(required=True)
    source.add_argument("--example", action="store_true", help="send the example request")
    source.add_argument("--file", help="OpenRTB JSON file to send ('-' reads stdin)")
    bid.add_argument("--target", default=DEFAULT_TARGET, help="exchange gRPC address")
    bid.set_defaults(func=_bid)

    train = sub.add_parser("train", help="train the attention model on the simulated world")
    train.add_argument("--out", default="models", help="folder for the versioned model directory")
    train.add_argument("--seed", type=int, help="default 0")
    train.add_argument("--impressions", type=int, help="training impressions (1M)")
    train.add_argument("--epochs", type=int, help="at most (8); early stopping may end sooner")
    train.add_argument("--threads", type=int, help="torch threads (2)")
    train.add_argument("--ship", action="store_true", help="also install it as the default model")
    train.set_defaults(func=_train)

    model = sub.add_parser("model", help="show or hot-swap the model a running exchange uses")
    model.add_argument("action", choices=["show", "swap", "check-fp16"])
    model.add_argument("path", nargs="?", help="swap, check-fp16: the model directory")
    model.add_argument("--backend", default="", help="swap: runtime (default: the configured one)")
    model.add_argument("--target", default=DEFAULT_TARGET, help="exchange gRPC address")
    model.set_defaults(func=_model)

    campaigns = sub.add_parser("campaigns", help="manage campaigns through the Admin service")
    campaigns.add_argument("action", choices=["list", "get", "pause", "resume", "upsert", "demo"])
    campaigns.add_argument("arg", nargs="?", help="campaign id (get/pause/resume) or file (upsert)")
    campaigns.add_argument("--target", default=DEFAULT_TARGET, help="exchange gRPC address")
    campaigns.add_argument("--out", help="demo: file to write (.json, .yaml)")
    campaigns.add_argument("--n", type=int, default=400, help="demo: how many campaigns")
    campaigns.add_argument("--seed", type=int, default=7, help="demo: generator seed")
    campaigns.set_defaults(func=_campaigns)

    pacing = sub.add_parser("pacing", help="train, evaluate or show budget pacing")
    pacing.add_argument("action", choices=["train", "eval", "show"])
    pacing.add_argument("--out", default="models", help="train: folder for the policy directory")
    pacing.add_argument("--seed", type=int, help="train: default 0")
    pacing.add_argument("--generations", type=int, help="train: evolution steps (600)")
    pacing.add_argument("--ship", action="store_true", help="train: install as the default")
    pacing.add_argument("--policy", help="eval: a policy directory (default: the shipped one)")
    pacing.add_argument("--days", type=int, default=8, help="eval: held-out days (8)")
    pacing.add_argument("--plot", help="eval: write spend and multiplier curves to this PNG")
    pacing.add_argument("--impressions", type=int, default=100_000, help="traffic a day (100k)")
    pacing.add_argument("--campaigns", type=int, default=16, help="campaigns a day (16)")
    pacing.add_argument("--target", default=DEFAULT_TARGET, help="show: exchange gRPC address")
    pacing.set_defaults(func=_pacing)

    ledger = sub.add_parser("ledger", help="report on or check the settlement ledger")
    ledger.add_argument("action", choices=["report", "check"])
    ledger.add_argument(
        "--config", type=Path, help="the exchange's TOML file (its store and campaigns)"
    )
    ledger.add_argument("--db", help="ledger database (default: the config's store.url)")
    ledger.add_argument("--campaigns", help="campaigns file, for budgets (default: the config's)")
    ledger.add_argument("--day", type=int, help="report: UTC day number (default today)")
    ledger.add_argument("--format", choices=["table", "csv", "json"], default="table")
    ledger.set_defaults(func=_ledger)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "model" and args.action != "show" and not args.path:
        parser().error(f"model {args.action} needs the model directory")
    if args.command == "campaigns":
        needs = {"get": "arg", "pause": "arg", "resume": "arg", "upsert": "arg", "demo": "out"}
        missing = needs.get(args.action)
        if missing and not getattr(args, missing):
            what = "--out FILE" if missing == "out" else "an id or file"
            parser().error(f"campaigns {args.action} needs {what}")
    if args.command == "pacing" and min(args.days, args.generations or 1, args.campaigns) < 1:
        parser().error("pacing --days, --generations and --campaigns must be at least 1")
    if args.command == "pacing" and args.impressions < 100:
        parser().error("pacing --impressions must be at least 100")
    quiet = args.command == "ledger"  # its output is the report: keep the log out of it
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        args.func(args)
    except BrokenPipeError:  # `attnx campaigns list | head`: the reader left; so do we
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
