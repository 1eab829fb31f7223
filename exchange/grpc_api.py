"""The gRPC front end: Exchange (Bid, Notify) and Admin, plus health and reflection.

Handlers translate between the wire and the exchange and map errors to gRPC
status codes; no handler lets an exception escape as a crash.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from exchange.app import Exchange, NotDurable
from exchange.campaign_io import campaign_from_proto, campaign_to_proto
from exchange.campaigns import Campaign
from exchange.decode_proto import decode_proto
from exchange.encode import to_proto
from exchange.errors import BadRequest, Conflict, Forbidden, NotFound
from exchange.notices import notice_from_proto
from exchange.settlement import Outcome
from exchange.settlement_client import SettlerDown
from exchange.store import Busy
from inference.runtime import BackendUnavailable, ModelRejected, describe
from protos.attnx.v1 import admin_pb2, admin_pb2_grpc, exchange_pb2, exchange_pb2_grpc

log = logging.getLogger("attnx.grpc")

MAX_PAGE = 1000
DEFAULT_PAGE = 100
SERVICES = (
    exchange_pb2.DESCRIPTOR.services_by_name["Exchange"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
)


async def _fail(context: grpc.aio.ServicerContext, exc: Exception, what: str) -> None:
    """Abort the call with the status that fits `exc` (always raises)."""
    if isinstance(exc, BadRequest):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, NotFound):
        await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    if isinstance(exc, Forbidden):
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
    if isinstance(exc, Conflict):
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, Busy | NotDurable | SettlerDown):
        await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    log.exception("%s failed", what)
    await context.abort(grpc.StatusCode.INTERNAL, f"{what} failed inside the exchange; see its log")


def _outcome(exc: Exception) -> str:
    """How a failed bid request is counted in the metrics."""
    if isinstance(exc, BadRequest):
        return "invalid"
    if isinstance(exc, Busy | NotDurable | SettlerDown):
        return "unavailable"
    return "error"


class ExchangeService(exchange_pb2_grpc.ExchangeServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    async def Bid(self, request, context):
        received = time.perf_counter_ns()
        metrics = self.exchange.metrics
        try:
            result = await self.exchange.bid(decode_proto(request), received)
            encoding = time.perf_counter_ns()
            response = to_proto(result)
            metrics.answered(bool(result.bids), received, encoding, time.perf_counter_ns())
            return response
        except Exception as exc:
            metrics.outcomes[_outcome(exc)] += 1
            await _fail(context, exc, "the auction")

    async def Notify(self, request, context):
        try:
            notice = notice_from_proto(request, self.exchange.rates, self.exchange.signer)
            receipt = await self.exchange.notify(notice)
            return exchange_pb2.NoticeAck(
                recorded=receipt.outcome is Outcome.RECORDED,
                bid_id=notice.trade_id,
                state=receipt.state.value,
            )
        except Exception as exc:
            await _fail(context, exc, "the notice")


class AdminService(admin_pb2_grpc.AdminServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    def _status(
        self, campaign: Campaign, shared_spend: dict[str, int] | None
    ) -> admin_pb2.CampaignStatus:
        state = self.exchange.state
        slot = state.slot(campaign.id)
        # One process: its own reservations are the whole spend; else the ledger's figure.
        spent = int(state.spent[slot]) if shared_spend is None else shared_spend.get(campaign.id, 0)
        return admin_pb2.CampaignStatus(
            campaign=campaign_to_proto(campaign),
            spent_today_micros=spent,
            remaining_today_micros=max(campaign.daily_budget_micros - spent, 0),
            multiplier=float(state.multiplier[slot]),
            pass_rate=float(state.pass_rate[slot]),
        )

    async def _page(self, size: int, after: str) -> tuple[list[admin_pb2.CampaignStatus], str]:
        """One page of campaigns in id order after the token, and the next token."""
        if not 0 < size <= MAX_PAGE:
            raise BadRequest("request.page_size", f"must be between 1 and {MAX_PAGE}")
        page = [c for c in self.exchange.book.all() if c.id > after][: size + 1]
        more = len(page) > size
        page = page[:size]
        spend = await self.exchange.shared_spend()
        return [self._status(c, spend) for c in page], page[-1].id if more else ""

    async def UpsertCampaign(self, request, context):
        try:
            campaign = campaign_from_proto(request)
            await self.exchange.save_campaign(campaign)
            return self._status(campaign, await self.exchange.shared_spend())
        except Exception as exc:
            await _fail(context, exc, "UpsertCampaign")

    async def GetCampaign(self, request, context):
        try:
            campaign = self.exchange.book.get(request.id)
            return self._status(campaign, await self.exchange.shared_spend())
        except Exception as exc:
            await _fail(context, exc, "GetCampaign")

    async def ListCampaigns(self, request, context):
        try:
            page, token = await self._page(request.page_size or DEFAULT_PAGE, request.page_token)
            return admin_pb2.ListCampaignsResponse(campaigns=page, next_page_token=token)
        except Exception as exc:
            await _fail(context, exc, "ListCampaigns")

    async def GetPacing(self, request, context):
        try:
            page, token = await self._page(request.page_size or DEFAULT_PAGE, request.page_token)
            pacing = self.exchange.pacing
            tick = pacing.last
            return admin_pb2.PacingStatus(
                method=pacing.pacer.name,
                policy_version=getattr(pacing.pacer, "version", ""),
                interval_s=pacing.interval_s,
                last_tick_unix_ms=round(tick.at * 1000) if tick else 0,
                last_tick_us=tick.seconds * 1e6 if tick else 0.0,
                campaigns=page,
                next_page_token=token,
            )
        except Exception as exc:
            await _fail(context, exc, "GetPacing")

    async def _set_paused(self, request, context, paused: bool):
        try:
            campaign = self.exchange.book.get(request.id)
            if campaign.paused != paused:
                campaign = replace(campaign, paused=paused)
                await self.exchange.save_campaign(campaign)
            return self._status(campaign, await self.exchange.shared_spend())
        except Exception as exc:
            await _fail(context, exc, "PauseCampaign" if paused else "ResumeCampaign")

    def _model_status(self) -> admin_pb2.ModelStatus:
        scorer = self.exchange.scorer
        spec = getattr(scorer, "spec", None)
        if spec is None:
            return admin_pb2.ModelStatus(name=scorer.name, backend=scorer.name)
        return admin_pb2.ModelStatus(
            name=spec.name, version=spec.version, backend=scorer.name, path=str(spec.path)
        )

    async def GetModel(self, request, context):
        return self._model_status()

    async def SwapModel(self, request, context):
        try:
            if not request.path:
                raise BadRequest("request.path", "is required: a model directory")
            await self.exchange.swap_model(Path(request.path), request.backend)
            return self._model_status()
        except BadRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (ModelRejected, BackendUnavailable, ValueError) as exc:
            kept = describe(self.exchange.scorer)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{exc}; still serving {kept}")
        except Exception as exc:
            await _fail(context, exc, "SwapModel")

    async def PauseCampaign(self, request, context):
        return await self._set_paused(request, context, True)

    async def ResumeCampaign(self, request, context):
        return await self._set_paused(request, context, False)


async def start_grpc(
    exchange: Exchange, address: str, reuse_port: bool = False
) -> tuple[grpc.aio.Server, int]:
    """Start the gRPC server; returns it and the bound port (address may use port 0).
    `reuse_port`: several worker processes listen on the same port."""
    limit = exchange.config.server.max_request_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ]
    )
    exchange_pb2_grpc.add_ExchangeServicer_to_server(ExchangeService(exchange), server)
    admin_pb2_grpc.add_AdminServicer_to_server(AdminService(exchange), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}: the port is taken or not allowed")
    await server.start()
    for name in ("", *SERVICES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port
