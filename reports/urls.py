from django.urls import path

from reports import idle_pages, views

urlpatterns = [
    path("reports/usage/", views.usage_page, name="usage-page"),
    path("reports/held-vs-used/", idle_pages.held_vs_used_page, name="held-vs-used-page"),
    path("reports/verify/", views.audit_verify, name="audit-verify-page"),
    path("exports/", views.export_jobs, name="export-jobs"),
]

#: Under /audit/, with the "audit" namespace the pages have always used (``audit:event-list``).
audit_patterns = (
    [
        path("", views.event_list, name="event-list"),
        path("events/<int:seq>/", views.event_detail, name="event-detail"),
    ],
    "audit",
)
