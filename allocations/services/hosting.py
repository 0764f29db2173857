"""Building and tearing down a desktop on its host, through the host's driver.

Both directions are idempotent, so a redelivered task (a worker killed half-way,
a broker that delivered twice) finishes the job instead of doing it twice:
the mdev UUID is fixed when the desktop is requested and the domain name
(``desktop-<id>``) when its build starts, before anything exists on the host,
and each step first looks at what already exists.
"""

from __future__ import annotations

from django.conf import settings

from allocations.models import Desktop
from inventory.drivers.base import DomainInfo, DomainSpec, DriverError
from inventory.models import GPUMdevType
from inventory.services.connect import driver_for


def _mdev_type_id(desktop: Desktop, gpu) -> str:
    row = GPUMdevType.objects.filter(gpu=gpu, profile=desktop.profile).first()
    if row is None:
        raise DriverError(
            f"GPU {gpu.pci_address} on {gpu.host.name} reports no vGPU type for {desktop.profile.name} "
            f"(sync the host's inventory)",
            retryable=False,
        )
    return row.type_id


def domain_spec(desktop: Desktop) -> DomainSpec:
    gpus = list(desktop.gpus.order_by("pci_address"))
    return DomainSpec(
        name=desktop.domain_name,
        uuid=str(desktop.domain_uuid),
        vcpus=desktop.vcpus,
        memory_mib=desktop.memory_mib,
        domain_type=settings.PORTAL_DOMAIN_TYPE,
        disk_image=desktop.template.disk_image,
        mdev_uuids=(str(desktop.mdev_uuid),) if desktop.mdev_uuid else (),
        passthrough_pci=tuple(g.pci_address for g in gpus) if desktop.is_passthrough else (),
        metadata=ownership_metadata(desktop),
    )


def ownership_metadata(desktop: Desktop) -> dict:
    """Who a desktop's domain belongs to: this deployment, its host and its desktop (what the reconciler
    checks before it touches a domain), plus tenant and owner for people reading ``virsh dumpxml``."""
    return {
        "deployment": settings.PORTAL_DEPLOYMENT_ID,
        "host": desktop.host.name,
        "desktop": desktop.pk,
        "tenant": desktop.tenant.slug,
        "owner": desktop.owner.get_username(),
    }


#: Whose a domain is, read from what ``ownership_metadata`` wrote (``owner_of``).
NOT_PORTAL, FOREIGN, UNOWNED, OURS = "not-portal", "foreign", "unowned", "ours"


def owner_of(metadata: dict, *, host: str, deployment: str | None = None) -> str:
    """Whose a domain is, from its portal metadata: OURS only when both deployment and host match."""
    if "desktop" not in metadata:
        return NOT_PORTAL
    if not metadata.get("deployment") or not metadata.get("host"):
        return UNOWNED
    deployment = deployment or settings.PORTAL_DEPLOYMENT_ID
    return OURS if (metadata["deployment"], metadata["host"]) == (deployment, host) else FOREIGN


def claims_domain(desktop: Desktop, info: DomainInfo | None) -> bool:
    """Is the existing domain ``info`` (named like this desktop's) this desktop's own? Nothing there, or a
    domain of this desktop that ``owner_of`` says is ours (or, made before domains named their deployment,
    names this desktop alone). A domain of another deployment sharing the daemon is never adopted,
    rebooted or removed in this desktop's name."""
    if info is None:
        return True
    if str(info.metadata.get("desktop", "")) != str(desktop.pk):
        return False
    owner = owner_of(info.metadata, host=desktop.host.name)
    return owner == OURS or (owner == UNOWNED and "deployment" not in info.metadata)


def _require_own_domain(driver, desktop: Desktop) -> None:
    if not claims_domain(desktop, driver.domain_info(desktop.domain_name)):
        raise DriverError(
            f"a domain named {desktop.domain_name} on {desktop.host.name} belongs to something else "
            f"(another portal deployment or a guest the portal did not make); it is left alone",
            retryable=False,
        )


def build_desktop(desktop: Desktop) -> DomainInfo:
    """Create the vGPU instance, define and start the domain. Safe to run again; refuses (DriverError,
    not retryable) when a domain of that name exists that is not this desktop's."""
    driver = driver_for(desktop.host)
    _require_own_domain(driver, desktop)
    if desktop.mdev_uuid:
        gpu = desktop.gpus.select_related("host").get()
        uuid = str(desktop.mdev_uuid)
        if not any(m.uuid == uuid for m in driver.list_mdevs()):
            driver.create_mdev(gpu.pci_address, _mdev_type_id(desktop, gpu), uuid)
    driver.define_domain(domain_spec(desktop))
    return driver.start_domain(desktop.domain_name)


def teardown_desktop(desktop: Desktop) -> None:
    """Power off and remove the domain, then its vGPU instance. Anything already gone is fine."""
    driver = driver_for(desktop.host)
    # none yet: its build never started, nothing was defined; another's domain of that name: not ours
    if desktop.domain_name and claims_domain(desktop, driver.domain_info(desktop.domain_name)):
        driver.destroy_domain(desktop.domain_name)
        driver.undefine_domain(desktop.domain_name)
    if desktop.mdev_uuid:
        driver.remove_mdev(str(desktop.mdev_uuid))


def wait_until_ready(desktop: Desktop) -> None:
    """Return once the desktop's started guest says it is up (the lab guest's serial banner, the
    guest agent on real hosts); DriverError when it does not within PORTAL_GUEST_READY_TIMEOUT_S."""
    driver_for(desktop.host).wait_guest_ready(desktop.domain_name, settings.PORTAL_GUEST_READY_TIMEOUT_S)


def reboot_desktop(desktop: Desktop) -> DomainInfo:
    """Power-cycle the domain (a fresh QEMU: its console and serial log start over)."""
    driver = driver_for(desktop.host)
    _require_own_domain(driver, desktop)
    driver.destroy_domain(desktop.domain_name)
    return driver.start_domain(desktop.domain_name)


def save_desktop(desktop: Desktop) -> None:
    """Suspend the desktop's domain to disk (libvirt managed save): its memory is kept in an image on its
    host and the guest stops. Safe to run again (an already saved domain is left as it is)."""
    driver = driver_for(desktop.host)
    _require_own_domain(driver, desktop)
    driver.managed_save(desktop.domain_name)


def restore_desktop(desktop: Desktop) -> DomainInfo:
    """Start the suspended desktop's domain again: libvirt restores it from its managed-save image, so the
    guest carries on where it was (no boot, so nothing to wait for). A running one is left running."""
    driver = driver_for(desktop.host)
    _require_own_domain(driver, desktop)
    return driver.start_domain(desktop.domain_name)
