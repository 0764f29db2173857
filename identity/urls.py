from django.urls import path

from identity import views

app_name = "identity"

urlpatterns = [
    path("", views.mappings, name="mappings"),
    path("mappings/<int:pk>/delete/", views.mapping_delete, name="mapping-delete"),
    path("sync/", views.sync_now, name="sync"),
]
