"""A person's /ws/live/ socket in tests (channels' communicator on LiveConsumer), and what it received."""

from __future__ import annotations

from channels.testing import WebsocketCommunicator

from allocations.consumers import LiveConsumer


async def live_socket(user):
    """Connected as ``user``, its hello frame read."""
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    await communicator.receive_json_from()  # hello
    return communicator


async def frames(communicator, timeout=0.3):
    """Every frame waiting for this socket (receive_nothing does not cancel the consumer on timeout)."""
    out = []
    while not await communicator.receive_nothing(timeout=timeout):
        out.append(await communicator.receive_json_from())
    return out
