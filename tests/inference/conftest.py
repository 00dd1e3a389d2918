"""The inference tests call the CLI in-process: it must not re-execute the test process."""

import pytest


@pytest.fixture(autouse=True)
def plain_malloc(monkeypatch):
    monkeypatch.setenv("BBMN_PLAIN_MALLOC", "1")
