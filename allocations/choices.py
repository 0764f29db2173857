from django.db import models


class DesktopStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    PROVISIONING = "provisioning", "Provisioning"
    RUNNING = "running", "Running"
    SUSPENDED = "suspended", "Suspended"
    STOPPING = "stopping", "Stopping"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Expired"
    FAILED = "failed", "Failed"


#: Desktops that hold capacity and count against quota (in flight included). A suspended desktop keeps its
#: vGPU claim (services.idle: a template whose suspend would give capacity back releases instead).
HOLDING_STATUSES = (
    DesktopStatus.REQUESTED,
    DesktopStatus.PROVISIONING,
    DesktopStatus.RUNNING,
    DesktopStatus.SUSPENDED,
    DesktopStatus.STOPPING,
)
FINAL_STATUSES = (DesktopStatus.RELEASED, DesktopStatus.EXPIRED, DesktopStatus.FAILED)

#: The one table of allowed lifecycle moves.
TRANSITIONS = {
    DesktopStatus.REQUESTED: {DesktopStatus.PROVISIONING, DesktopStatus.STOPPING, DesktopStatus.FAILED},
    DesktopStatus.PROVISIONING: {DesktopStatus.RUNNING, DesktopStatus.STOPPING, DesktopStatus.FAILED},
    DesktopStatus.RUNNING: {DesktopStatus.SUSPENDED, DesktopStatus.STOPPING, DesktopStatus.FAILED},
    # resumed (RUNNING), or released/expired while suspended (STOPPING), or its host lost (FAILED)
    DesktopStatus.SUSPENDED: {DesktopStatus.RUNNING, DesktopStatus.STOPPING, DesktopStatus.FAILED},
    DesktopStatus.STOPPING: {DesktopStatus.RELEASED, DesktopStatus.EXPIRED, DesktopStatus.FAILED},
    DesktopStatus.RELEASED: set(),
    DesktopStatus.EXPIRED: set(),
    DesktopStatus.FAILED: set(),
}


class EndReason(models.TextChoices):
    RELEASED = "released", "Released by the user"
    EXPIRED = "expired", "Expired"
    FAILED = "failed", "Failed"
    HOST_LOST = "host-lost", "Domain vanished from its host"
    DRAINED = "drained", "Its host was drained"
    IDLE = "idle", "Given back while idle"


class IdleAction(models.TextChoices):
    """What happens to a desktop of a template after its idle warning's grace period (services.idle)."""

    SUSPEND = "suspend", "Suspend (save its memory to disk; resumed on request)"
    RELEASE = "release", "Release (the desktop and its disk are deleted)"


class QuotaRequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
