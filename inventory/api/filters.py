import django_filters

from inventory.models import GPU, Host, VGPUProfile


class HostFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Host
        fields = ["name", "state", "telemetry_source"]


class GPUFilterSet(django_filters.FilterSet):
    host_name = django_filters.CharFilter(field_name="host__name")
    profile = django_filters.CharFilter(field_name="current_profile__name")
    has_profile = django_filters.BooleanFilter(field_name="current_profile", lookup_expr="isnull", exclude=True)

    class Meta:
        model = GPU
        fields = ["host", "host_name", "model", "mode", "present", "profile", "has_profile", "uuid"]


class VGPUProfileFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    min_framebuffer_mib = django_filters.NumberFilter(field_name="framebuffer_mib", lookup_expr="gte")

    class Meta:
        model = VGPUProfile
        fields = ["name", "board", "series", "mig_backed", "min_framebuffer_mib"]
