"""The live websocket: anonymous refused, each person joins only their own groups, and what a
tenant member receives never includes another tenant's desktops or utilization."""

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
