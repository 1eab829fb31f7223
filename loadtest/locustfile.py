"""Locust users for AttnX: bidders over gRPC and over OpenRTB HTTP/JSON.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080     # HTTP users
    ATTNX_GRPC=127.0.0.1:50051 locust -f loadtest/locustfile.py ...    # and gRPC users

`make loadtest` (loadtest/run.py) starts an exchange, runs this headless and prints a
summary. Both users send the traffic of loadtest/traffic.py. An invalid request must
come back refused with its field named, and counts as a success only then. For the
bids they win, users send notices at realistic rates: the billing notice (80%), then
the attention beacon (60% of those), over the same protocol as the bid.
"""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit

import grpc.experimental.gevent as grpc_gevent
import orjson

grpc_gevent.init_gevent()  # before any gRPC object: calls yield to gevent, not block it

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from locust import FastHttpUser, User, constant, task  # noqa: E402

from loadtest.traffic import INVALID_MESSAGE, LOST_TO_HIGHER_BID, Traffic  # noqa: E402
from protos.attnx.v1 import exchange_pb2, exchange_pb2_grpc, openrtb_pb2  # noqa: E402

NOTICE_TYPES = {
    "win": exchange_pb2.NOTICE_TYPE_WIN,
    "bill": exchange_pb2.NOTICE_TYPE_BILL,
    "loss": exchange_pb2.NOTICE_TYPE_LOSS,
    "attention": exchange_pb2.NOTICE_TYPE_ATTENTION,
}
TIMEOUT_S = 2.0
_users = iter(range(1_000_000))  # each user its own seeded traffic


class GrpcBidder(User):
    """Bid and Notify over gRPC, each call reported to locust as a request."""

    wait_time = constant(float(os.environ.get("ATTNX_WAIT_S", "0")))
    weight = int(os.environ.get("ATTNX_GRPC_WEIGHT", "3"))
    target = os.environ.get("ATTNX_GRPC", "")

    def on_start(self) -> None:
        if not self.target:
            self.environment.runner.quit()
            raise RuntimeError("set ATTNX_GRPC=host:port for the gRPC users")
        self.traffic = Traffic(seed=next(_users))
        self.channel = grpc.insecure_channel(self.target)
        self.exchange = exchange_pb2_grpc.ExchangeStub(self.channel)

    def on_stop(self) -> None:
        self.channel.close()

    def _report(self, name: str, started: float, size: int, exc: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="grpc", name=name, response_time=(time.perf_counter() - started) * 1e3,
            response_length=size, exception=exc, context={},
        )  # fmt: skip

    @task
    def bid(self) -> None:
        body, invalid = self.traffic.request()
        request = json_format.ParseDict(body, openrtb_pb2.BidRequest())
        started = time.perf_counter()
        try:
            response = self.exchange.Bid(request, timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            refused = exc.code() == grpc.StatusCode.INVALID_ARGUMENT
            if invalid and refused and INVALID_MESSAGE in (exc.details() or ""):
                self._report("Bid (invalid: refused)", started, 0, None)
            else:
                self._report("Bid", started, 0, exc)
            return
        if invalid:
            self._report("Bid (invalid: refused)", started, 0, AssertionError("accepted"))
            return
        self._report("Bid", started, response.ByteSize(), None)
        for bid in (b for seatbid in response.seatbid for b in seatbid.bid):
            self._notices(bid)

    def _notices(self, bid) -> None:
        for kind in self.traffic.notices():
            notice = exchange_pb2.Notice(
                type=NOTICE_TYPES[kind], bid_id=bid.id, sig=bid.ext.attention.sig
            )
            if kind in ("win", "bill"):
                notice.price = bid.price
            elif kind == "loss":
                notice.loss_reason = LOST_TO_HIGHER_BID
            else:
                notice.attentive_seconds = self.traffic.measured_seconds(bid.ext.attention.seconds)
            self._notify(f"Notify {kind}", notice)

    def _notify(self, name: str, notice) -> None:
        started = time.perf_counter()
        try:
            self.exchange.Notify(notice, timeout=TIMEOUT_S)
            self._report(name, started, 0, None)
        except grpc.RpcError as exc:
            self._report(name, started, 0, exc)


class HttpBidder(FastHttpUser):
    """POST /openrtb2/auction and the notice URLs of the bids won."""

    wait_time = constant(float(os.environ.get("ATTNX_WAIT_S", "0")))
    weight = int(os.environ.get("ATTNX_HTTP_WEIGHT", "1"))

    def on_start(self) -> None:
        self.traffic = Traffic(seed=next(_users))

    @task
    def bid(self) -> None:
        body, invalid = self.traffic.request()
        name = "POST /openrtb2/auction" + (" (invalid: refused)" if invalid else "")
        with self.client.post(
            "/openrtb2/auction", data=orjson.dumps(body), name=name, catch_response=True,
            headers={"content-type": "application/json"},
        ) as response:  # fmt: skip
            if invalid:
                if response.status_code == 400 and INVALID_MESSAGE in response.text:
                    response.success()
                else:
                    response.failure(f"invalid request answered {response.status_code}")
                return
            if response.status_code not in (200, 204):
                response.failure(f"status {response.status_code}: {response.text[:200]}")
                return
            bids = [] if response.status_code == 204 else [
                b for s in orjson.loads(response.content)["seatbid"] for b in s["bid"]]  # fmt: skip
        for bid in bids:
            self._notices(bid)

    def _notices(self, bid: dict) -> None:
        price = f"{bid['price']:.6f}"
        for kind in self.traffic.notices():
            if kind in ("win", "bill"):
                url = bid["nurl" if kind == "win" else "burl"].replace("${AUCTION_PRICE}", price)
            elif kind == "loss":
                url = bid["lurl"].replace("${AUCTION_LOSS}", str(LOST_TO_HIGHER_BID))
            else:
                attention = bid["ext"]["attention"]
                seconds = self.traffic.measured_seconds(attention["seconds"])
                url = attention["beacon"].replace("${ATTENTION_SECONDS}", f"{seconds:.3f}")
            self._get(url, f"GET /notice/{kind}")

    def _get(self, url: str, name: str) -> None:
        parts = urlsplit(url)
        self.client.get(f"{parts.path}?{parts.query}", name=name)
