from django.urls import path

from allocations import fleet_pages, template_pages, views

urlpatterns = [
    path("", views.home, name="home"),
    path("desktops/new/", views.desktop_new, name="desktop-new"),
    path("desktops/<int:pk>/", views.desktop_detail, name="desktop-page"),
    path("desktops/<int:pk>/parts/<str:part>/", views.desktop_part, name="desktop-part"),
    path("desktops/<int:pk>/<str:action>/", views.desktop_action, name="desktop-action"),
    path("tenants/<int:pk>/parts/usage/", views.tenant_usage_part, name="tenant-usage-part"),
    path("quota-requests/", views.quota_request_queue, name="quota-requests"),
    path("quota-requests/new/", views.quota_request_new, name="quota-request-new"),
    path("quota-requests/<int:pk>/<str:decision>/", views.quota_request_decide, name="quota-request-decide"),
    path("templates/", template_pages.template_list, name="templates"),
    path("templates/new/", template_pages.template_new, name="template-new"),
    path("templates/<int:pk>/", template_pages.template_detail, name="template-page"),
    path("templates/<int:pk>/edit/", template_pages.template_edit, name="template-edit"),
    # not "template-retire": the API router names its retire action so, and the page's form posted to the API
    path("templates/<int:pk>/retire/", template_pages.template_retire, name="template-retire-page"),
    path("inventory/", fleet_pages.overview, name="fleet-overview"),  # inventory's host pages are under it
    path("hosts/<str:name>/desktops/", views.host_desktops, name="host-desktops"),
]
