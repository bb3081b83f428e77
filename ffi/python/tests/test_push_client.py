"""The asyncio push client (``ubdcc_local.push``) against a running ``ubdcc restapi``: books from a
pattern writer (whose every version is known exactly) are rebuilt from ``@book20`` and ``@bbo``
streams and equal the pattern at the update id of each message; conflated streams send fewer
messages; bad requests raise ``PushError``; a writer that dies turns into a status message."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pytest

from pattern_support import EXCHANGE, market, pattern_side, ubdcc_bin
from ubdcc_local import BookView, PushClient, PushError

LEVELS = 100


@pytest.fixture
def restapi():
    """``restapi(cluster) -> ws url``: a restapi on a free port reading ``cluster``'s segments (no
    mgmt: push needs none), killed when the test ends."""
    processes: list[subprocess.Popen] = []

    def start(cluster: str) -> str:
        proc = subprocess.Popen(
            [ubdcc_bin(), "restapi", "--cluster", cluster, "--port", "0",
             "--mgmt-url", "http://127.0.0.1:9", "--log-level", "error"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        processes.append(proc)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("listening on "):
                return f"ws://{line.split()[-1]}/ws"
        raise RuntimeError("restapi ended before it listened")

    yield start
    for proc in processes:
        proc.kill()
        proc.wait(timeout=30)


def stream(i: int, kind: str) -> str:
    return f"{EXCHANGE}:{market(i)}@{kind}"


def expected_view(u: int, depth: int) -> tuple[list[list[float]], list[list[float]]]:
    a = u % 1_000_000
    return pattern_side(a, "bids", LEVELS)[:depth], pattern_side(a, "asks", LEVELS)[:depth]


async def collect(url: str, streams: list[str], seconds: float) -> dict[str, list[dict]]:
    """Every message of ``streams`` for ``seconds``, checked against the pattern as it arrives."""
    received: dict[str, list[dict]] = {name: [] for name in streams}
    views = {name: BookView(int(name.split("@book")[1].split("@")[0])) for name in streams if "@book" in name}
    async with PushClient(url) as client:
        await client.subscribe(*streams)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                name, data = await asyncio.wait_for(client.recv(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
            received[name].append(data)
            if "status" in data:
                continue
            if name in views:
                view = views[name]
                view.apply(data)
                bids, asks = expected_view(data["u"], view.depth)
                assert (view.bids, view.asks) == (bids, asks), f"{name} at {data['u']}"
            else:
                bids, asks = expected_view(data["u"], 1)
                assert (data["b"], data["a"]) == (bids[0], asks[0]), f"{name} at {data['u']}"
    return received


def test_streams_rebuild_the_pattern_and_conflated_ones_send_less(start_writer, restapi):
    writer = start_writer(books=2, levels=LEVELS, rate=50)
    url = restapi(writer.cluster)
    streams = [stream(0, "book20"), stream(0, "bbo"), stream(1, "book5"), stream(1, "book5@200ms")]
    received = asyncio.run(collect(url, streams, 3.0))
    for name in streams:
        assert received[name], f"nothing on {name}"
    assert received[stream(0, "book20")][0]["snapshot"] is True
    assert any(not m.get("snapshot", True) for m in received[stream(0, "book20")]), "no diffs"
    plain, conflated = len(received[stream(1, "book5")]), len(received[stream(1, "book5@200ms")])
    assert conflated < plain, (conflated, plain)
    assert conflated <= 3.0 / 0.2 + 2, conflated


def test_requests_are_answered_and_bad_ones_raise(start_writer, restapi):
    writer = start_writer(books=1, levels=LEVELS)
    url = restapi(writer.cluster)

    async def scenario() -> None:
        async with PushClient(url) as client:
            with pytest.raises(PushError) as bad:
                await client.subscribe(f"{EXCHANGE}:{market(0)}@depth")
            assert bad.value.code == 2 and "invalid stream name" in bad.value.msg
            with pytest.raises(PushError) as missing:
                await client.subscribe(f"{EXCHANGE}:NOPE@bbo")
            assert "not in this host's shared memory" in missing.value.msg
            await client.subscribe(stream(0, "bbo"), stream(0, "book10"))
            assert await client.list_subscriptions() == [stream(0, "bbo"), stream(0, "book10")]
            await client.unsubscribe(stream(0, "bbo"))
            assert await client.list_subscriptions() == [stream(0, "book10")]

    asyncio.run(scenario())


def test_a_dead_writer_becomes_a_status_message(start_writer, restapi):
    writer = start_writer(books=1, levels=LEVELS, rate=20)
    url = restapi(writer.cluster)

    async def scenario() -> dict:
        async with PushClient(url) as client:
            await client.subscribe(stream(0, "book20"))
            name, first = await asyncio.wait_for(client.recv(), 10)
            assert first["snapshot"] is True
            writer.send(signal.SIGKILL)
            while True:
                name, data = await asyncio.wait_for(client.recv(), 10)
                if "status" in data:
                    return data

    status = asyncio.run(scenario())
    assert status["status"] == "out_of_sync", status
    assert status["reason"] in ("writer gone", "writer hung", "not on this host"), status


def test_a_refused_connection_says_why():
    async def scenario() -> None:
        with pytest.raises((PushError, OSError)):
            async with PushClient("ws://127.0.0.1:9/ws", timeout=2):
                pass

    asyncio.run(scenario())
