"""The tenant, people and quota pages (``allocations.tenant_pages``)."""

from django.urls import path

from allocations import tenant_pages as pages

urlpatterns = [
    path("tenants/", pages.tenant_list, name="tenants"),
    path("tenants/new/", pages.tenant_new, name="tenant-new"),
    path("tenants/<int:pk>/", pages.tenant_detail, name="tenant-page"),
    path("tenants/<int:pk>/active/", pages.tenant_active, name="tenant-active"),
    path("tenants/<int:pk>/quota/", pages.quota_edit, name="quota-edit"),
    path("people/", pages.person_list, name="people"),
    path("people/add/", pages.member_add, name="member-add"),
    path("people/<int:pk>/", pages.person_detail, name="person-page"),
    path("people/<int:pk>/active/", pages.person_active, name="person-active"),
    path("memberships/<int:pk>/role/", pages.membership_role, name="membership-role"),
    path("memberships/<int:pk>/delete/", pages.membership_delete, name="membership-delete"),
]
