from django.urls import path

from allocations import views

urlpatterns = [
    path("", views.home, name="home"),
]
