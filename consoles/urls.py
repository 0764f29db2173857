from django.urls import path

from consoles import views

urlpatterns = [
    path("desktops/<int:pk>/console/", views.console_page, name="desktop-console"),
]
