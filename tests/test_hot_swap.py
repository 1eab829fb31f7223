"""Hot swap against the real server: a new model version goes in while bids keep flowing."""

from __future__ import annotations

import json
import shutil
import threading

import grpc
import pytest
from google.protobuf import json_format

from exchange.example import example_request
from inference.runtime import DEFAULT_MODEL
from protos.attnx.v1 import admin_pb2, admin_pb2_grpc, exchange_pb2_grpc, openrtb_pb2

TIMEOUT = 10


def bid_request(i: int) -> openrtb_pb2.BidRequest:
    body = example_request(f"swap-{i}")
    return json_format.ParseDict(body, openrtb_pb2.BidRequest())


@pytest.fixture
def other_model(tmp_path):
    """A second model version: the shipped one under another name and version."""
    path = tmp_path / "attention-v2"
    shutil.copytree(DEFAULT_MODEL, path, ignore=shutil.ignore_patterns("trt-cache"))
    spec = (path / "spec.json").read_text()
    (path / "spec.json").write_text(spec.replace('"version": "', '"version": "v2-', 1))
    return path


def test_swap_while_bidding_never_drops_a_request(start_server, other_model):
    server = start_server()
    channel = server.channel()
    admin = admin_pb2_grpc.AdminStub(channel)
    before = admin.GetModel(admin_pb2.GetModelRequest(), timeout=TIMEOUT)
    assert before.backend == "onnxruntime-cpu" and before.version

    failures, answered, stop = [], [0], threading.Event()

    def keep_bidding():
        stub = exchange_pb2_grpc.ExchangeStub(channel)
        i = 0
        while not stop.is_set():
            try:
                response = stub.Bid(bid_request(i), timeout=TIMEOUT)
                assert response.seatbid, response
                answered[0] += 1
            except Exception as exc:  # any failure fails the test
                failures.append(exc)
            i += 1

    bidder = threading.Thread(target=keep_bidding)
    bidder.start()
    try:
        after = admin.SwapModel(admin_pb2.SwapModelRequest(path=str(other_model)), timeout=60)
        swapped_at = answered[0]
        while answered[0] < swapped_at + 20 and not failures:
            threading.Event().wait(0.01)
    finally:
        stop.set()
        bidder.join()
    assert failures == []
    assert after.version == "v2-" + before.version
    assert after.path == str(other_model)
    assert admin.GetModel(admin_pb2.GetModelRequest(), timeout=TIMEOUT).version == after.version
    assert "model swapped" in server.log()


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing", "is not a model directory"),
        ("probe", "probe: p_view differs"),
        ("onnx", "did not load"),
    ],
)
def test_a_failed_swap_keeps_the_old_model_and_says_why(
    start_server, other_model, breakage, message
):
    if breakage == "missing":
        (other_model / "spec.json").unlink()
    elif breakage == "probe":
        probe = json.loads((other_model / "probe.json").read_text())
        probe["outputs"]["p_view"][0] += 0.25
        (other_model / "probe.json").write_text(json.dumps(probe))
    else:
        (other_model / "model.onnx").write_bytes(b"not an onnx file")
    server = start_server()
    admin = admin_pb2_grpc.AdminStub(server.channel())
    before = admin.GetModel(admin_pb2.GetModelRequest(), timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as err:
        admin.SwapModel(admin_pb2.SwapModelRequest(path=str(other_model)), timeout=60)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert message in err.value.details()
    assert f"still serving {before.name} {before.version}" in err.value.details()
    assert admin.GetModel(admin_pb2.GetModelRequest(), timeout=TIMEOUT) == before
    stub = exchange_pb2_grpc.ExchangeStub(server.channel())
    assert stub.Bid(bid_request(0), timeout=TIMEOUT).seatbid
