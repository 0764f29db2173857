from django.urls import path

from tenancy import password_views, views

urlpatterns = [
    path("account/", views.account, name="account"),
    path("account/tokens/", views.token_list, name="api-tokens"),
    path("account/tokens/<int:pk>/revoke/", views.token_revoke, name="api-token-revoke"),
    path("account/tokens/<int:pk>/rotate/", views.token_rotate, name="api-token-rotate"),
    # issue 17: passwords and sessions
    path("account/password/", password_views.ChangePasswordView.as_view(), name="password_change"),
    path("account/sign-out-everywhere/", password_views.sign_out_everywhere, name="sign-out-everywhere"),
    path("account/password-reset/", password_views.ResetRequestView.as_view(), name="password_reset"),
    path("account/password-reset/sent/", password_views.ResetDoneView.as_view(), name="password_reset_done"),
    path(
        "account/password-reset/<uidb64>/<token>/",
        password_views.ResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("account/password-reset/done/", password_views.ResetCompleteView.as_view(), name="password_reset_complete"),
]
