"""No request compiles anything: warm-up has compiled (or loaded) every kernel the
bid path calls, including those only billable requests reach.

Numba keeps compiled signatures per process, so the check runs in a fresh one: an
earlier test in this session must not have compiled a kernel for it.
"""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import asyncio, json, sys, time
from dataclasses import replace
from pathlib import Path

import orjson
from numba.core.registry import CPUDispatcher

import exchange.features, inference.runtime, kernels.eligibility, kernels.pricing
import kernels.shortlist
from exchange.app import Exchange
from exchange.config import load_config
from exchange.decode_json import decode_json
from exchange.users import UserState
from loadtest.traffic import Traffic

MODULES = (exchange.features, inference.runtime, kernels.eligibility, kernels.pricing,
           kernels.shortlist)


def signatures():
    return {f"{m.__name__}.{name}": sorted(map(str, d.signatures)) for m in MODULES
            for name, d in vars(m).items() if isinstance(d, CPUDispatcher)}


async def main(folder):
    config = load_config(None)
    config = replace(config, store=replace(config.store, url=f"sqlite:///{folder}/a.db",
                                           journal=f"{folder}/journal"),
                     auction=replace(config.auction, max_candidates=16))
    exchange = Exchange(config)
    await exchange.start()
    exchange.warm_up()
    before = signatures()
    traffic, ran = Traffic(seed=3), 0
    while ran < 300:
        body, invalid = traffic.request()
        if invalid:
            continue
        user = UserState(history=[5, 9], seen={}) if ran % 2 else None
        result = exchange.auction.run(decode_json(orjson.dumps(body)), time.perf_counter_ns(), user)
        if result.durable is not None:
            await result.durable
        ran += 1
    after = signatures()
    await exchange.close()
    print(json.dumps({k: v for k, v in after.items() if v != before[k]}))


asyncio.run(main(sys.argv[1]))
"""


def test_billable_requests_of_every_kind_compile_nothing_after_warm_up(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    compiled = json.loads(out.stdout.strip().splitlines()[-1])
    assert compiled == {}, f"compiled while serving: {compiled}"
