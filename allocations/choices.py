from django.db import models


class Role(models.TextChoices):
    PLATFORM_ADMIN = "platform-admin", "Platform admin"
    TENANT_MEMBER = "tenant-member", "Tenant member"
    AUDITOR = "auditor", "Auditor"


#: Roles that apply platform-wide and therefore carry no tenant.
PLATFORM_ROLES = (Role.PLATFORM_ADMIN, Role.AUDITOR)
