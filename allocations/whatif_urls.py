"""The capacity what-if page (``whatif_pages``); included from portal/urls.py."""

from django.urls import path

from allocations import whatif_pages

urlpatterns = [
    path("capacity/what-if/", whatif_pages.whatif_page, name="capacity-whatif"),
]
