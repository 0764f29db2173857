from django.urls import path

from allocations import views

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
    path("tenants/", views.tenant_list, name="tenants"),
    path("templates/", views.template_list, name="templates"),
    path("hosts/<str:name>/desktops/", views.host_desktops, name="host-desktops"),
]
