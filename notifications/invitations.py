"""Invitations: a person added by an address nobody had gets an account without a usable password
(``allocations.services.people``) and a mail with a link to set one (``views.InvitationView``, Django's
set-password-from-a-token page). The token is Django's password-reset token with its own salt and
lifetime (PORTAL_INVITATION_DAYS: a password reset's two hours are too short for an invitation read the
next morning): it works until the password is set (setting it changes what the token signs), and it
is made when the mail is sent."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.urls import reverse
from django.utils.crypto import constant_time_compare
from django.utils.encoding import force_bytes
from django.utils.http import base36_to_int, urlsafe_base64_encode

from tenancy.models import Membership


class InvitationTokenGenerator(PasswordResetTokenGenerator):
    key_salt = "notifications.invitations.InvitationTokenGenerator"

    def check_token(self, user, token) -> bool:
        """As Django's, but valid for PORTAL_INVITATION_DAYS instead of PASSWORD_RESET_TIMEOUT."""
        if not (user and token) or token.count("-") != 1:
            return False
        try:
            ts = base36_to_int(token.split("-")[0])
        except ValueError:
            return False
        if not any(
            constant_time_compare(self._make_token_with_timestamp(user, ts, secret), token)
            for secret in [self.secret, *self.secret_fallbacks]
        ):
            return False
        return self._num_seconds(self._now()) - ts <= settings.PORTAL_INVITATION_DAYS * 86400


invitation_tokens = InvitationTokenGenerator()


def invitation_path(user) -> str:
    """The path of ``user``'s set-password page, with a fresh token."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("notifications:invitation", kwargs={"uidb64": uidb64, "token": invitation_tokens.make_token(user)})


def context(delivery) -> dict:
    """What the invitation mail says: who invited them, to which tenants, and the link's path."""
    user = delivery.recipient
    memberships = Membership.objects.filter(user=user).select_related("tenant").order_by("pk")
    return {
        "user": user,
        "invited_by": delivery.data.get("invited_by", ""),
        "memberships": list(memberships),
        "path": invitation_path(user),
        "subject": "You are invited to the GPU Portal: set your password",
        "valid_days": settings.PORTAL_INVITATION_DAYS,
    }
