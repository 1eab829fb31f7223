"""The HTTP front end for OpenRTB callers that speak JSON, and the notice URLs.

POST /openrtb2/auction   200 + BidResponse | 204 no bid | 400 | 413 | 503 (journal failed)
GET  /notice/{win,bill,loss,attention}?bid=..&sig=..&price=..&cur=..&reason=..&seconds=..
     200 {"recorded", "bid", "state"} | 400 | 403 forged | 404 unknown | 409 conflict | 503
GET  /healthz                        status, campaigns, ledger counters
"""

from __future__ import annotations

import logging
import time

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exchange.app import Exchange, NotDurable
from exchange.decode_json import decode_json
from exchange.encode import to_json
from exchange.errors import BadRequest, Conflict, Forbidden, NotFound
from exchange.notices import notice_from_query
from exchange.settlement import Outcome
from exchange.settlement_client import SettlerDown
from exchange.store import Busy

log = logging.getLogger("attnx.http")

JSON = "application/json"
PROMETHEUS = "text/plain; version=0.0.4"
OPENRTB_VERSION = {"x-openrtb-version": "2.6"}


def _error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status, media_type=JSON)


class BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(exchange: Exchange) -> Starlette:
    limit = exchange.config.server.max_request_bytes

    async def auction(request: Request) -> Response:
        received = time.perf_counter_ns()
        metrics = exchange.metrics
        try:
            body = await _read_body(request, limit)
            result = await exchange.bid(decode_json(body), received)
        except BodyTooLarge:
            metrics.outcomes["invalid"] += 1
            return _error(413, f"request body is larger than {limit} bytes")
        except BadRequest as exc:
            metrics.outcomes["invalid"] += 1
            return _error(400, str(exc))
        except NotDurable as exc:
            metrics.outcomes["unavailable"] += 1
            log.error("%s", exc)
            return _error(503, str(exc))
        except Exception:
            metrics.outcomes["error"] += 1
            log.exception("the auction failed")
            return _error(500, "the auction failed inside the exchange; see its log")
        encoding = time.perf_counter_ns()
        if not result.bids:
            response = Response(status_code=204, headers=OPENRTB_VERSION)
        else:
            response = Response(to_json(result), media_type=JSON, headers=OPENRTB_VERSION)
        metrics.answered(bool(result.bids), received, encoding, time.perf_counter_ns())
        return response

    async def metrics(request: Request) -> Response:
        """Prometheus text format: this process's bid-path histograms and counters."""
        return Response(exchange.metrics.render(), media_type=PROMETHEUS)

    async def notice(request: Request) -> Response:
        try:
            notice = notice_from_query(
                request.path_params["kind"], request.query_params, exchange.rates, exchange.signer
            )
            receipt = await exchange.notify(notice)
        except BadRequest as exc:
            return _error(400, str(exc))
        except Forbidden as exc:
            return _error(403, str(exc))
        except NotFound as exc:
            return _error(404, str(exc))
        except Conflict as exc:
            return _error(409, str(exc))
        except (Busy, SettlerDown) as exc:
            return _error(503, str(exc))
        except Exception:
            log.exception("a notice failed")
            return _error(500, "the notice failed inside the exchange; see its log")
        body = {
            "recorded": receipt.outcome is Outcome.RECORDED,
            "bid": notice.trade_id,
            "state": receipt.state.value,
        }
        return Response(orjson.dumps(body), media_type=JSON)

    async def healthz(request: Request) -> Response:
        try:
            ledger = await exchange.settlement.metrics()
        except SettlerDown as exc:
            body = {"status": "degraded", "campaigns": len(exchange.book), "ledger": str(exc)}
            return Response(orjson.dumps(body), 503, media_type=JSON)
        body = {"status": "ok", "campaigns": len(exchange.book), "ledger": ledger}
        return Response(orjson.dumps(body), media_type=JSON)

    return Starlette(
        routes=[
            Route("/openrtb2/auction", auction, methods=["POST"]),
            Route("/notice/{kind}", notice, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )
