from django.urls import path

from tenancy import views

urlpatterns = [
    path("account/", views.account, name="account"),
    path("account/tokens/", views.token_list, name="api-tokens"),
    path("account/tokens/<int:pk>/revoke/", views.token_revoke, name="api-token-revoke"),
    path("account/tokens/<int:pk>/rotate/", views.token_rotate, name="api-token-rotate"),
]
