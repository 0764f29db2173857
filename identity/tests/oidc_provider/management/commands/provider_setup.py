"""The provider's client (the portal) and people: ``provider_setup`` (from the environment), and
``provider_setup --groups dora=gpu-users,other`` to change one person's groups, ``--allow-redirect URI``
to let the client return to one more address (a live server's)."""

import json
import os

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from oauth2_provider.models import Application


class Command(BaseCommand):
    def add_arguments(self, parser):
        parser.add_argument("--groups", help="username=group,group: set that person's groups only")
        parser.add_argument("--allow-redirect", help="one more redirect URI the portal's client may use")

    def handle(self, *args, groups=None, allow_redirect=None, **options):
        if allow_redirect:
            client = Application.objects.get(client_id=os.environ["OIDC_PROVIDER_CLIENT_ID"])
            client.redirect_uris = f"{client.redirect_uris} {allow_redirect}"
            client.save(update_fields=["redirect_uris"])
            return
        if groups:
            username, _, names = groups.partition("=")
            self._set_groups(User.objects.get(username=username), [n for n in names.split(",") if n])
            return
        Application.objects.update_or_create(
            client_id=os.environ["OIDC_PROVIDER_CLIENT_ID"],
            defaults={
                "name": "GPU portal",
                "client_secret": os.environ["OIDC_PROVIDER_CLIENT_SECRET"],
                "client_type": Application.CLIENT_CONFIDENTIAL,
                "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
                "redirect_uris": os.environ["OIDC_PROVIDER_REDIRECT_URI"],
                "algorithm": Application.RS256_ALGORITHM,
                "skip_authorization": True,  # the institution's own client: no consent page
            },
        )
        for username, (password, names) in json.loads(os.environ["OIDC_PROVIDER_PEOPLE"]).items():
            user, _ = User.objects.get_or_create(username=username)
            user.set_password(password)
            user.email = f"{username}@idp.example.org"
            user.first_name = username.title()
            user.save()
            self._set_groups(user, names)

    def _set_groups(self, user, names):
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in names])
