"""Storage URLs: a password is masked where shown and removed where stored, and
nothing else about a URL changes (issue #22, item 1)."""

from __future__ import annotations

import json

import pytest

from batchlab._secrets import redact_url
from batchlab.study import Study, StudyConfig

from .study.conftest import LINREG_STUDY

# (url, as shown, as stored)
URLS = [
    (
        "postgresql://user:pass@host/db",
        "postgresql://user:***@host/db",
        "postgresql://user@host/db",
    ),
    (
        "postgresql+psycopg://batchlab:s3ntinel-PW-4711@127.0.0.1:5432/studies",
        "postgresql+psycopg://batchlab:***@127.0.0.1:5432/studies",
        "postgresql+psycopg://batchlab@127.0.0.1:5432/studies",
    ),
    # "@" and ":" in a password, escaped as the URL grammar asks.
    ("postgresql://u:p%40ss%3Aw@host/db", "postgresql://u:***@host/db", "postgresql://u@host/db"),
    # Unescaped, SQLAlchemy would misread it; the whole of it is masked all the same.
    ("postgresql://u:p@ss/w?rd@host/db", "postgresql://u:***@host/db", "postgresql://u@host/db"),
    # A user with a raw "@", as some hosted PostgreSQL services name users.
    ("postgresql://me@srv:pw@srv.example/db", "postgresql://me@srv:***@srv.example/db", None),
    # An empty user: nothing of the userinfo is left when stored.
    ("postgresql://:pw@host/db", "postgresql://:***@host/db", "postgresql://host/db"),
    # libpq's password keyword in the query.
    (
        "postgresql://u@host/db?password=pw&sslmode=require",
        "postgresql://u@host/db?password=***&sslmode=require",
        "postgresql://u@host/db?sslmode=require",
    ),
    (
        "postgresql://u@host/db?sslmode=require&password=pw",
        None,
        "postgresql://u@host/db?sslmode=require",
    ),
    ("postgresql://u@host/db?password=pw", None, "postgresql://u@host/db"),
]

UNCHANGED = [
    "postgresql://user@host/db",  # no password: libpq reads PGPASSWORD or ~/.pgpass
    "postgresql://host:5432/db",  # no user
    "postgresql+psycopg://user@host:5432/db?sslmode=require",
    "journal:///abs/path/optuna.journal",
    "runs/study/optuna.journal",
    "/abs/path/with:colon@and-at/optuna.journal",
    "sqlite:///study.db",
    "sqlite:////abs/path/study.db",
]


@pytest.mark.parametrize(("url", "shown", "stored"), URLS)
def test_password_is_masked_when_shown_and_removed_when_stored(url, shown, stored):
    if shown is not None:
        assert redact_url(url) == shown
    if stored is not None:
        assert redact_url(url, mask=None) == stored


@pytest.mark.parametrize("url", UNCHANGED)
def test_url_without_password_is_unchanged(url):
    assert redact_url(url) == url
    assert redact_url(url, mask=None) == url


def test_every_url_inside_free_text_is_masked():
    message = (
        "cannot open storage 'postgresql://a:s3cret@h1/db': OperationalError: "
        'failed for user "a"; also tried postgresql://b:t0psecret@h2:5433/db?x=1, and "sqlite:///x.db"'
    )
    redacted = redact_url(message)
    assert "s3cret" not in redacted and "t0psecret" not in redacted
    assert "'postgresql://a:***@h1/db'" in redacted
    assert "postgresql://b:***@h2:5433/db?x=1," in redacted
    assert redacted.endswith(
        'failed for user "a"; also tried postgresql://b:***@h2:5433/db?x=1, and "sqlite:///x.db"'
    )


def test_a_saved_config_keeps_no_password_but_the_loaded_one_does():
    config = StudyConfig.model_validate(
        {**LINREG_STUDY, "storage": "postgresql+psycopg://u:s3cret@host/db"}
    )
    assert config.storage == "postgresql+psycopg://u:s3cret@host/db"  # in memory, to connect
    assert config.to_json_dict()["storage"] == "postgresql+psycopg://u@host/db"
    assert "s3cret" not in config.model_dump_json()


def test_loading_a_config_json_that_holds_a_password_removes_it_from_the_file(tmp_path, caplog):
    # Written by an older batchlab: the process that loads it keeps the password in
    # memory, to connect; the file keeps none.
    url = "postgresql+psycopg://u:s3cret@host/db"
    (tmp_path / "config.json").write_text(json.dumps({**LINREG_STUDY, "storage": url}))
    with caplog.at_level("WARNING"):
        study = Study.load(tmp_path)
    assert study.config.storage == url and study.storage_url == url
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["storage"] == "postgresql+psycopg://u@host/db"
    assert "s3cret" not in caplog.text and "PGPASSWORD" in caplog.text
