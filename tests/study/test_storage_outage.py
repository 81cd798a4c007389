"""A storage that stops answering mid-study (its database server down) stops a worker
with a message that says so and how to go on, not a traceback; the PostgreSQL test in
tests/study/test_fault_matrix_postgres.py stops a real server."""

from __future__ import annotations

import optuna
import pytest
from sqlalchemy.exc import OperationalError

from batchlab.study import StorageError, StorageUnreachable
from batchlab.study._optuna import is_storage_outage
from batchlab.study._storage import storage_unreachable


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (optuna.exceptions.StorageInternalError("commit failed"), True),
        (OperationalError("SELECT 1", {}, Exception("connection refused")), True),
        (ValueError("a trial's own bug"), False),
        (RuntimeError("nan"), False),
    ],
)
def test_which_errors_are_an_outage(error, outage):
    assert is_storage_outage(error) is outage


def test_the_message_names_the_storage_masked_and_how_to_resume():
    cause = OperationalError("SELECT 1", {}, Exception("connection refused\n  port 5432"))
    error = storage_unreachable("postgresql+psycopg://me:pw123@db:5432/studies", cause)
    assert isinstance(error, StorageUnreachable) and isinstance(error, StorageError)
    text = str(error)
    assert "pw123" not in text and "me:***@db:5432" in text
    assert "became unreachable" in text and "OperationalError" in text
    assert "batchlab study resume DIR" in text and "batchlab study worker URL" in text
    assert "\n" not in text


def test_the_message_gives_the_drivers_reason_not_optunas_wrapper():
    wrapper = optuna.exceptions.StorageInternalError("An exception is raised during the commit.")
    wrapper.__cause__ = OperationalError("SELECT 1", {}, Exception("connection refused"))
    text = str(storage_unreachable("postgresql://me@db/studies", wrapper))
    assert "OperationalError" in text and "connection refused" in text
    assert "during the commit" not in text
