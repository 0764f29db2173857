from django.db import models

from inventory.choices import VGPU_MODES, HostState


class HostQuerySet(models.QuerySet):
    def online(self):
        """Hosts that may take new desktops."""
        return self.filter(state=HostState.ONLINE)


class GPUQuerySet(models.QuerySet):
    def present(self):
        return self.filter(present=True)

    def for_host(self, host):
        return self.filter(host=host)

    def in_vgpu_mode(self):
        return self.filter(mode__in=VGPU_MODES)
