import pytest
from django.core.exceptions import ImproperlyConfigured

from core.env import env_bool, env_int, env_list, parse_database_url


def test_postgres_url_is_split_into_django_settings():
    config = parse_database_url("postgres://portal:s%40cret@db.example:5433/gpu?sslmode=require")
    assert config == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "gpu",
        "USER": "portal",
        "PASSWORD": "s@cret",
        "HOST": "db.example",
        "PORT": "5433",
        "OPTIONS": {"sslmode": "require"},
    }


def test_sqlite_urls_take_relative_and_absolute_paths():
    assert parse_database_url("sqlite:///var/p.db")["NAME"] == "var/p.db"
    assert parse_database_url("sqlite:////tmp/p.db")["NAME"] == "/tmp/p.db"


@pytest.mark.parametrize(
    "url,message",
    [
        ("mysql://u@h/db", "unsupported scheme 'mysql'"),
        ("postgres://u@h:port/db", "malformed port"),
        ("postgres://u@h:5432/", "needs a database name"),
        ("sqlite://", "needs a file path"),
    ],
)
def test_malformed_database_urls_name_the_problem(url, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        parse_database_url(url)


def test_env_helpers_raise_on_malformed_values(monkeypatch):
    monkeypatch.setenv("X_BOOL", "perhaps")
    monkeypatch.setenv("X_INT", "ten")
    monkeypatch.setenv("X_LOW", "-1")
    with pytest.raises(ImproperlyConfigured, match="X_BOOL='perhaps' is not a boolean"):
        env_bool("X_BOOL", False)
    with pytest.raises(ImproperlyConfigured, match="X_INT='ten' is not an integer"):
        env_int("X_INT", 1)
    with pytest.raises(ImproperlyConfigured, match="X_LOW=-1 must be at least 0"):
        env_int("X_LOW", 1, minimum=0)


def test_env_helpers_use_defaults_when_unset_or_empty(monkeypatch):
    monkeypatch.setenv("X_EMPTY", "  ")
    monkeypatch.delenv("X_UNSET", raising=False)
    assert env_bool("X_EMPTY", True) is True
    assert env_int("X_UNSET", 7) == 7
    monkeypatch.setenv("X_LIST", "a.example, b.example,")
    assert env_list("X_LIST", []) == ["a.example", "b.example"]
