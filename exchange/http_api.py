"""The HTTP front end for OpenRTB callers that speak JSON, and the notice URLs.

POST /openrtb2/auction   200 + BidResponse | 204 no bid | 400 | 413
GET  /notice/{win,bill,loss}?bid=..&price=..&cur=..&reason=..
GET  /healthz
"""

from __future__ import annotations

import logging
import time

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exchange.app import Exchange
from exchange.decode_json import decode_json
from exchange.encode import to_json
from exchange.errors import BadRequest, NotFound
from exchange.notices import notice_from_query

log = logging.getLogger("attnx.http")

JSON = "application/json"
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
        try:
            body = await _read_body(request, limit)
            result = exchange.auction.run(decode_json(body), received)
        except BodyTooLarge:
            return _error(413, f"request body is larger than {limit} bytes")
        except BadRequest as exc:
            return _error(400, str(exc))
        except Exception:
            log.exception("the auction failed")
            return _error(500, "the auction failed inside the exchange; see its log")
        if not result.bids:
            return Response(status_code=204, headers=OPENRTB_VERSION)
        return Response(to_json(result), media_type=JSON, headers=OPENRTB_VERSION)

    async def notice(request: Request) -> Response:
        try:
            event = notice_from_query(
                request.path_params["kind"], request.query_params, exchange.rates
            )
            recorded = await exchange.store.record_notice(event)
        except BadRequest as exc:
            return _error(400, str(exc))
        except NotFound as exc:
            return _error(404, str(exc))
        except Exception:
            log.exception("a notice failed")
            return _error(500, "the notice failed inside the exchange; see its log")
        return Response(orjson.dumps({"recorded": recorded, "bid": event.bid_id}), media_type=JSON)

    async def healthz(request: Request) -> Response:
        return Response(
            orjson.dumps({"status": "ok", "campaigns": len(exchange.book)}), media_type=JSON
        )

    return Starlette(
        routes=[
            Route("/openrtb2/auction", auction, methods=["POST"]),
            Route("/notice/{kind}", notice, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
