"""Pages of a person's password and sessions: reset by mail (/account/password-reset/…), change
(/account/password/) and sign out everywhere (/account/sign-out-everywhere/). Django's views, in the
portal's look; what happens around them (limits, mail, audit, other sessions) is ``tenancy.passwords``
and ``tenancy.sessions``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_POST

from tenancy import passwords, sessions


class ResetRequestView(auth_views.PasswordResetView):
    """An address in, the same "check your mail" page out, whether or not it is anyone's."""

    template_name = "registration/password_reset_form.html"
    success_url = reverse_lazy("password_reset_done")

    def form_valid(self, form):
        try:
            passwords.request_reset(form.cleaned_data["email"], request=self.request)
        except passwords.TooManyResets as exc:
            context = self.get_context_data(form=form, error=exc.message)
            return self.render_to_response(context, status=exc.status_code)
        return redirect(self.success_url)


class ResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "registration/password_reset_done.html"


class ResetConfirmView(auth_views.PasswordResetConfirmView):
    """The link from the mail: a new password, twice. Setting it ends the person's sessions (this
    browser's session is left to Django, which drops it as its password hash no longer matches)."""

    template_name = "registration/password_reset_confirm.html"
    success_url = reverse_lazy("password_reset_complete")

    def form_valid(self, form):
        with transaction.atomic():
            response = super().form_valid(form)
            keep = self.request.session.session_key
            passwords.password_set(form.user, verb="auth.password_reset_done", keep_session=keep)
        return response


class ResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "registration/password_reset_complete.html"


class ChangePasswordView(LoginRequiredMixin, auth_views.PasswordChangeView):
    """A signed-in person with a local password changes it; their other sessions end. People of a
    directory or an identity provider have no local password: they are told where to change it."""

    template_name = "tenancy/password_change.html"
    success_url = reverse_lazy("account")

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated and not request.user.has_usable_password():
            status = 200 if request.method in ("GET", "HEAD") else 403
            return render(request, "tenancy/password_change.html", {"no_local_password": True}, status=status)
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form):
        with transaction.atomic():
            response = super().form_valid(form)  # keeps this session signed in (a new key)
            keep = self.request.session.session_key
            ended = passwords.password_set(form.user, verb="auth.password_changed", keep_session=keep)
        others = f"{ended} other session{'s' if ended != 1 else ''} ended" if ended else "no other session was open"
        messages.success(self.request, f"Your password is changed; {others}.")
        return response


@login_required
@require_POST
def sign_out_everywhere(request):
    """End every session of the person, this one too; their API tokens keep working."""
    ended = sessions.sign_out_everywhere(request.user, actor=request.user)
    logout(request)
    messages.success(
        request,
        f"You are signed out everywhere ({ended} session{'s' if ended != 1 else ''} ended). "
        "Your API tokens still work: revoke them on the API tokens page after signing in.",
    )
    return redirect("login")
