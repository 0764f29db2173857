"""Console input reaches the desktop's idle clock (issue 18, ``allocations.services.idle``): a console
notes input on its desktop at its counters' flush, at most once a minute; screen-update requests that a
client sends on its own are not input."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async as sync_to_async

from allocations.models import Desktop
from consoles import consumers
from consoles.tests.test_consumer import opened, ticket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

KEY_DOWN_A = bytes([4, 1, 0, 0, 0, 0, 0, 0x61])  # RFB KeyEvent
UPDATE_REQUEST = bytes([3, 1, 0, 0, 0, 0, 4, 0, 3, 0])  # FramebufferUpdateRequest


async def last_input(desktop):
    return (await sync_to_async(Desktop.objects.get)(pk=desktop.pk)).last_input_at


async def test_console_input_is_noted_on_the_desktop_and_update_requests_are_not(
    console_desktop, tenant_member, monkeypatch
):
    monkeypatch.setattr(consumers, "TICK_S", 0.05)
    monkeypatch.setattr(consumers, "FLUSH_EVERY_S", 0.1)
    assert await last_input(console_desktop) is None
    console = await opened(await ticket(tenant_member, console_desktop), tenant_member)
    await asyncio.sleep(0.4)
    opened_at = await last_input(console_desktop)
    assert opened_at is not None  # opening the console is input

    long_ago = opened_at - timedelta(hours=1)
    await sync_to_async(Desktop.objects.filter(pk=console_desktop.pk).update)(last_input_at=long_ago)
    await console.send_to(bytes_data=UPDATE_REQUEST * 3)
    await asyncio.sleep(0.4)
    assert await last_input(console_desktop) == long_ago

    await console.send_to(bytes_data=KEY_DOWN_A)
    await asyncio.sleep(0.4)
    assert await last_input(console_desktop) > long_ago
    await console.disconnect()
