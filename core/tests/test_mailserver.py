"""The tests' SMTP server (core/tests/mailserver.py) is a real one: Django's SMTP backend delivers to it."""

import smtplib

import pytest
from django.core.mail import send_mail

from core.tests.mailserver import SMTPServer


def test_the_test_smtp_server_receives_django_mail_and_refuses_once_stopped(settings):
    with SMTPServer() as smtp:
        smtp.use_in(settings)
        send_mail("hi", "body", "portal@example.org", ["a@example.org"])
        got = smtp.wait_for(1)
        assert got[0]["Subject"] == "hi"
    with pytest.raises((ConnectionRefusedError, smtplib.SMTPException, OSError)):
        send_mail("hi", "body", "portal@example.org", ["a@example.org"])
