import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from inventory.choices import GPUMode
from inventory.models import GPU, Host
from inventory.tests.factories import make_gpu, make_host, make_profile

pytestmark = pytest.mark.django_db


def test_gpu_in_passthrough_mode_cannot_run_a_profile():
    gpu = make_gpu(make_host(), mode=GPUMode.PASSTHROUGH)
    gpu.current_profile = make_profile("A40-8Q")
    with pytest.raises(ValidationError, match="passthrough mode cannot run a vGPU profile"):
        gpu.full_clean()


def test_database_refuses_a_profile_on_a_passthrough_gpu_too():
    gpu = make_gpu(make_host(), mode=GPUMode.PASSTHROUGH)
    with pytest.raises(IntegrityError), transaction.atomic():
        GPU.objects.filter(pk=gpu.pk).update(current_profile=make_profile("A40-8Q"))


def test_gpu_profile_must_match_its_board():
    gpu = make_gpu(make_host(), model="A16", framebuffer_mib=16384)
    gpu.current_profile = make_profile("A40-8Q")
    with pytest.raises(ValidationError, match="is for A40, not for this A16"):
        gpu.full_clean()


def test_pci_address_is_unique_per_host_and_well_formed():
    host = make_host()
    make_gpu(host, "0000:41:00.0")
    with pytest.raises(ValidationError, match="already exists"):
        GPU(host=host, pci_address="0000:41:00.0", model="A40", framebuffer_mib=1).full_clean()
    with pytest.raises(ValidationError, match="PCI address looks like"):
        GPU(host=host, pci_address="41:00.0", model="A40", framebuffer_mib=1).full_clean()
    GPU(host=make_host("gpu-2"), pci_address="0000:41:00.0", model="A40", framebuffer_mib=1).full_clean()


def test_host_name_names_its_queue():
    host = make_host("gpu-7")
    assert host.queue == "host.gpu-7"
    with pytest.raises(ValidationError, match="lower-case"):
        Host(name="GPU 7", libvirt_uri="qemu:///system").full_clean()


def test_online_queryset_skips_offline_and_maintenance():
    online = make_host("a")
    make_host("b", state="offline")
    make_host("c", state="maintenance")
    assert list(Host.objects.online()) == [online]


def test_profile_cannot_promise_more_than_the_board_holds():
    profile = make_profile("A40-8Q")
    profile.max_per_gpu = 7
    with pytest.raises(ValidationError, match="exceeds the board"):
        profile.full_clean()


def test_gpu_mode_cannot_change_under_running_desktops(api, platform_admin):
    profile = make_profile("A40-8Q")
    gpu = make_gpu(make_host(), current_profile=profile, instances_used=2)
    response = api.as_user(platform_admin).patch(f"/api/gpus/{gpu.pk}/", {"mode": "passthrough"}, format="json")
    assert response.status_code == 409
    assert "2 desktop instance(s) in use" in response.json()["error"]["message"]
    gpu.refresh_from_db()
    assert gpu.mode == "vgpu"
    GPU.objects.filter(pk=gpu.pk).update(instances_used=0, current_profile=None)
    response = api.as_user(platform_admin).patch(f"/api/gpus/{gpu.pk}/", {"mode": "passthrough"}, format="json")
    assert response.status_code == 200
