"""The live websocket: anonymous refused, each person joins only their own groups, and what a
tenant member receives never includes another tenant's desktops or utilization."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from allocations.consumers import LiveConsumer
from allocations.services.request import request_desktop
from allocations.tests.factories import make_template, make_user
from inventory.models import VGPUProfile
from inventory.services.utilization import publish_fleet, sample_host

pytestmark = pytest.mark.django_db(transaction=True)


async def connect(user):
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
    communicator.scope["user"] = user
    connected, code = await communicator.connect()
    return communicator, connected, code


async def drain(communicator, timeout=0.3):
    """Every frame waiting for this client (receive_nothing does not cancel the consumer on timeout)."""
    frames = []
    while not await communicator.receive_nothing(timeout=timeout):
        frames.append(await communicator.receive_json_from())
    return frames


@pytest.mark.asyncio
async def test_anonymous_and_roleless_users_are_refused():
    from django.contrib.auth.models import AnonymousUser

    communicator, connected, code = await connect(AnonymousUser())
    assert not connected and code == 4401
    nobody = await sync_to_async(make_user)("nobody")
    communicator, connected, code = await connect(nobody)
    assert not connected and code == 4403


@pytest.mark.asyncio
async def test_each_role_joins_only_its_groups(tenant_member, auditor):
    member, connected, _ = await connect(tenant_member)
    assert connected
    hello = await member.receive_json_from()
    assert hello == {"event": "hello", "data": {"groups": [f"user.{tenant_member.pk}"]}}
    operator, _, _ = await connect(auditor)
    assert (await operator.receive_json_from())["data"]["groups"] == ["operators", f"user.{auditor.pk}"]
    await member.disconnect()
    await operator.disconnect()


@pytest.mark.asyncio
async def test_a_member_never_receives_another_tenants_events(
    lab, tenant, other_tenant, tenant_member, outsider, auditor, catalog
):
    def setup():
        host = lab("lab-a40=A40x2")
        for t in (tenant, other_tenant):
            t.quota.max_framebuffer_mib = 100000
            t.quota.save()
        template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant, other_tenant])
        return host, template

    host, template = await sync_to_async(setup)()
    alice, _, _ = await connect(tenant_member)
    mallory, _, _ = await connect(outsider)
    operator, _, _ = await connect(auditor)
    for c in (alice, mallory, operator):
        await c.receive_json_from()  # hello

    # provisioned below by calling the task itself: nothing is queued (the fast tier needs no broker)
    ask = sync_to_async(request_desktop)
    mine = await ask(actor=tenant_member, template_id=template.pk, duration_hours=1, queue_provisioning=False)
    theirs = await ask(actor=outsider, template_id=template.pk, duration_hours=1, queue_provisioning=False)

    def run_both():
        from allocations import tasks

        tasks.provision.apply(args=[mine.pk]).get()
        tasks.provision.apply(args=[theirs.pk]).get()
        sample_host(host)
        publish_fleet()

    await sync_to_async(run_both)()
    alice_frames, mallory_frames, operator_frames = await drain(alice), await drain(mallory), await drain(operator)

    def desktops(frames):
        return {f["data"]["id"] for f in frames if f["event"] == "desktop.status"}

    assert desktops(alice_frames) == {mine.pk}
    assert desktops(mallory_frames) == {theirs.pk}
    assert desktops(operator_frames) == {mine.pk, theirs.pk}
    # vGPU utilization: each owner gets only their own instance; nobody but operators gets host figures
    assert {f["data"]["mdev_uuid"] for f in alice_frames if f["event"] == "vgpu.utilization"} == {str(mine.mdev_uuid)}
    assert {f["data"]["mdev_uuid"] for f in mallory_frames if f["event"] == "vgpu.utilization"} == {
        str(theirs.mdev_uuid)
    }
    # the fleet's figures go to operators only, batched: one event for every GPU
    assert not [f for f in alice_frames + mallory_frames if f["event"] in ("host.utilization", "fleet.utilization")]
    (fleet,) = [f for f in operator_frames if f["event"] == "fleet.utilization"]
    assert len(fleet["data"]["gpus"]) == 2
    for c in (alice, mallory, operator):
        await c.disconnect()


@pytest.mark.asyncio
async def test_only_operators_can_watch_a_host(lab, tenant_member, auditor):
    host = await sync_to_async(lab)("lab-a40=A40x1")
    member, _, _ = await connect(tenant_member)
    operator, _, _ = await connect(auditor)
    for c in (member, operator):
        await c.receive_json_from()
        await c.send_json_to({"type": "watch-host", "host": host.pk})
    await drain(member)
    await drain(operator)
    await sync_to_async(sample_host)(host)
    assert [f["event"] for f in await drain(operator)] == ["host.utilization"]
    assert await drain(member) == []
    for c in (member, operator):
        await c.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("frame", ["[]", '"x"', "3", "not json", "null"])
async def test_a_frame_that_is_not_a_json_object_is_answered_and_the_socket_stays_open(tenant_member, frame):
    """Reproduction (issue 15): a frame that is valid JSON but not an object ([] or "x") killed the
    socket with 1011 (AttributeError in receive_json)."""
    communicator, connected, _ = await connect(tenant_member)
    assert connected
    await communicator.receive_json_from()  # hello
    await communicator.send_to(text_data=frame)
    assert await communicator.receive_json_from() == {
        "event": "error",
        "data": {"detail": "Expected a JSON object with a type."},
    }
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from())["event"] == "pong"
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_a_revoked_operator_stops_receiving_the_operator_feed_within_a_second(tenant, auditor):
    """Reproduction (issue 15): a membership revoked while its holder had /ws/live/ open kept the
    operator feed (only reconnecting got 403). Revoked here the way an admin would, in the Django admin's
    ORM path (a plain delete), not through a portal service."""
    from channels.layers import get_channel_layer

    from core.live import OPERATORS, message_for
    from tenancy.models import Membership

    await sync_to_async(Membership.objects.create)(user=auditor, tenant=tenant, role="tenant-member")
    communicator, connected, _ = await connect(auditor)
    assert (await communicator.receive_json_from())["data"]["groups"] == ["operators", f"user.{auditor.pk}"]
    await sync_to_async(Membership.objects.filter(user=auditor, role="auditor").delete)()
    hello = await communicator.receive_json_from(timeout=1)
    assert hello == {"event": "hello", "data": {"groups": [f"user.{auditor.pk}"]}}
    await get_channel_layer().group_send(OPERATORS, message_for("fleet.utilization", {"gpus": []}))
    assert await communicator.receive_nothing(timeout=0.3)

    await sync_to_async(Membership.objects.filter(user=auditor).delete)()  # no role left at all
    assert await communicator.receive_output(timeout=1) == {"type": "websocket.close", "code": 4403}


@pytest.mark.asyncio
async def test_a_deactivated_person_is_disconnected_at_once(tenant_member):
    communicator, _, _ = await connect(tenant_member)
    await communicator.receive_json_from()
    tenant_member.is_active = False
    await sync_to_async(tenant_member.save)()
    assert await communicator.receive_output(timeout=1) == {"type": "websocket.close", "code": 4403}


@pytest.mark.asyncio
async def test_subscriptions_a_channel_layer_forgot_are_joined_again(tenant_member, monkeypatch):
    """A Redis restarted without persistence forgets every group membership; the socket joins its groups
    again at its next heartbeat and checks the layer with an echo, so events reach it again."""
    from channels.layers import get_channel_layer

    from allocations import consumers
    from core.live import message_for, user_group

    monkeypatch.setattr(consumers, "HEARTBEAT_S", 0.2)
    communicator, _, _ = await connect(tenant_member)
    await communicator.receive_json_from()
    layer = get_channel_layer()
    layer.groups.clear()  # what the restart did
    await layer.group_send(user_group(tenant_member.pk), message_for("desktop.status", {"id": 1}))
    assert await communicator.receive_nothing(timeout=0.1)
    await asyncio.sleep(0.5)  # a heartbeat
    await layer.group_send(user_group(tenant_member.pk), message_for("desktop.status", {"id": 2}))
    assert (await communicator.receive_json_from(timeout=1))["data"] == {"id": 2}
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_a_dashboard_gets_only_the_gpus_it_shows_so_its_traffic_does_not_grow_with_the_fleet(auditor):
    """Issue 19: the overview shows one page of hosts and says which GPUs (fleet-snapshot); fleet-wide
    changes to other GPUs are not sent to it. A socket that never said gets every change, as before."""
    from channels.layers import get_channel_layer

    from core.live import OPERATORS, message_for

    shown, other = await connect(auditor), await connect(auditor)
    for communicator, _, _ in (shown, other):
        await communicator.receive_json_from()  # hello
    await shown[0].send_json_to({"type": "fleet-snapshot", "gpus": [11, 12]})
    snapshot = await shown[0].receive_json_from(timeout=2)
    assert snapshot["data"]["full"] is True

    layer = get_channel_layer()
    changes = {"full": False, "gpus": [[11, 50, 1, 2, 30], [99, 7, 1, 2, 30], [12, 0, 1, 2, 30]]}
    await layer.group_send(OPERATORS, message_for("fleet.utilization", changes))
    await layer.group_send(OPERATORS, message_for("fleet.utilization", {"full": False, "gpus": [[99, 8, 1, 2, 30]]}))

    shown_frames, other_frames = await drain(shown[0]), await drain(other[0])
    assert [[row[0] for row in f["data"]["gpus"]] for f in shown_frames] == [[11, 12]]
    assert [[row[0] for row in f["data"]["gpus"]] for f in other_frames] == [[11, 99, 12], [99]]
    for communicator, _, _ in (shown, other):
        await communicator.disconnect()


@pytest.mark.asyncio
async def test_a_session_past_its_idle_limit_opens_no_live_socket(tenant_member, settings):
    """Review finding: the live socket never looked at session expiry (only the HTTP middleware did), so
    an idle-expired session cookie still opened /ws/live/ and received pushes."""
    import time

    from django.contrib.sessions.backends.db import SessionStore

    from tenancy.sessions import LAST_SEEN, SIGNED_IN_AT

    def session(idle_s):
        store = SessionStore()
        store[SIGNED_IN_AT] = int(time.time()) - idle_s
        store[LAST_SEEN] = int(time.time()) - idle_s
        store.save()
        return store

    settings.PORTAL_SESSION_IDLE_MINUTES = 30
    for idle_s, opens in ((60, True), (31 * 60, False)):
        communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
        communicator.scope["user"] = tenant_member
        communicator.scope["session"] = await sync_to_async(session)(idle_s)
        connected, code = await communicator.connect()
        assert (connected, code if not connected else None) == ((True, None) if opens else (False, 4401))
        await communicator.disconnect()
