"""A real SMTP server for tests (aiosmtpd on loopback, an ephemeral port): mail the portal sends through
Django's SMTP backend arrives here as parsed messages. Stopping it makes the port refuse connections,
which is how tests show that a mail server that is down loses nothing."""

from __future__ import annotations

import email
import email.policy
import threading
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from core.tests.http import free_port


class _Collect:
    def __init__(self, inbox: list[EmailMessage], arrived: threading.Condition):
        self.inbox = inbox
        self.arrived = arrived

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self.arrived:
            self.inbox.append(message)
            self.arrived.notify_all()
        return "250 OK"


class SMTPServer:
    """``with SMTPServer() as smtp: settings.EMAIL_PORT = smtp.port ...; smtp.wait_for(1)``."""

    def __init__(self, port: int | None = None):
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.inbox: list[EmailMessage] = []
        self._arrived = threading.Condition()
        self._controller: Controller | None = None

    def start(self) -> SMTPServer:
        self._controller = Controller(_Collect(self.inbox, self._arrived), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SMTPServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """Block until at least ``count`` messages arrived; AssertionError after ``timeout`` seconds."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.inbox) >= count, timeout):
                raise AssertionError(f"expected {count} mail(s) within {timeout} s, got {len(self.inbox)}")
        return list(self.inbox)

    def use_in(self, settings) -> None:
        """Point Django's mail framework (a pytest-django ``settings`` fixture) at this server."""
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = self.host
        settings.EMAIL_PORT = self.port
        settings.EMAIL_USE_TLS = False
        settings.EMAIL_USE_SSL = False
        settings.EMAIL_TIMEOUT = 5
