"""The portal's routes plus ``/api/exports/test-rows/``: the real export view for a kind a test registers."""

from django.urls import path

from portal.urls import urlpatterns as portal_urlpatterns
from reports.api import ExportView


class RowsExportView(ExportView):
    kind = "test-rows"


urlpatterns = [path("api/exports/test-rows/", RowsExportView.as_view()), *portal_urlpatterns]
