"""The CLI tests call ``main`` in-process: no re-exec of the test process, a scratch tracking
store, and torch's thread count restored (``--threads`` sets it for the whole process)."""

import pytest
import torch


@pytest.fixture
def mlflow_uri(tmp_path):
    """One store per test; a module that runs many tracked commands overrides it with a shared one."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def environment(monkeypatch, mlflow_uri):
    monkeypatch.setenv("BBMN_PLAIN_MALLOC", "1")  # no re-exec of the test process
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
