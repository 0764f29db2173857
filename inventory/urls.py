from django.urls import path

from inventory import views

app_name = "inventory"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("hosts/<str:name>/", views.host_detail, name="host-detail"),
    path("hosts/<str:name>/state/<str:state>/", views.host_state, name="host-state"),
    path("profiles/", views.profiles, name="profiles"),
]
