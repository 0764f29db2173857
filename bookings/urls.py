from django.urls import path

from bookings import views

app_name = "bookings"

urlpatterns = [
    path("", views.calendar, {"scope": "mine"}, name="mine"),
    path("tenant/", views.calendar, {"scope": "tenant"}, name="tenant"),
    path("fleet/", views.calendar, {"scope": "fleet"}, name="fleet"),
    path("new/", views.booking_new, name="new"),
    path("capacity/", views.capacity, name="capacity"),
    path("<int:pk>/", views.booking_detail, name="detail"),
    path("feed/<str:token>.ics", views.feed, name="feed"),
]
