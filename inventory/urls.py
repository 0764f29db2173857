from django.urls import path

from inventory import views

app_name = "inventory"
urlpatterns = [
    path("hosts/", views.host_list, name="host-list"),
    path("new-host/", views.host_new, name="host-new"),  # not under hosts/: "new" is a valid host name
    path("hosts/<str:name>/", views.host_detail, name="host-detail"),
    path("hosts/<str:name>/edit/", views.host_edit, name="host-edit"),
    path("hosts/<str:name>/retire/", views.host_retire, name="host-retire"),
    path("hosts/<str:name>/state/<str:state>/", views.host_state, name="host-state"),
    path("profiles/", views.profiles, name="profiles"),
]
