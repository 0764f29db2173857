"""POST /api/capacity/what-if/: the capacity what-if (``placement.whatif``) for platform admins."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from allocations.placement import whatif, whatif_demand
from tenancy.permissions import RolePermission
from tenancy.roles import ADMINS, NOBODY

EXAMPLE = {
    "drain": ["lab-a16"],
    "add": [{"like": "lab-a40", "count": 1}, {"gpu_model": "L40S", "gpus": 2, "count": 1}],
    "demand": {"days": 30, "scale": 1},
}


class CapacityWhatIfView(APIView):
    """Replay a demand (the last ``days`` of desktop requests × ``scale``, or a ``mix`` of templates)
    on the online fleet as it is and with hosts drained or added; answer refused (in all and per
    template), stranded capacity (mean and peak, GPUs) and GPU-hours served, before and after, and a
    sentence. The demand known ahead (desktops booked in the next ``days``) is replayed too (``ahead``).
    Runs synchronously; deterministic for a given ``seed``."""

    permission_classes = [RolePermission]
    read_roles, write_roles = NOBODY, ADMINS
    renderer_classes = [JSONRenderer]

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={200: OpenApiTypes.OBJECT},
        examples=[OpenApiExample("Drain one host, add two", value=EXAMPLE, request_only=True)],
    )
    def post(self, request):
        return Response(whatif_demand.run_whatif(whatif.parse_scenario(request.data)))
