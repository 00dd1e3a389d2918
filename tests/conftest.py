"""Shared test fixtures: paths to the repository, the test data and (when present) the mirror."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for servers and process groups the tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
TEST_DATA = REPO / "tests" / "data"


def mirror_path() -> Path | None:
    """The local data mirror: $BBMN_DATA_MIRROR, else ../shared/data beside the checkout."""
    for candidate in [*os.environ.get("BBMN_DATA_MIRROR", "").split(os.pathsep), REPO.parent / "shared" / "data"]:
        if candidate and (Path(candidate) / "moleculenet").is_dir():
            return Path(candidate)
    return None


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def test_data() -> Path:
    return TEST_DATA


@pytest.fixture
def mirror() -> Path:
    path = mirror_path()
    if path is None:
        pytest.skip("no local data mirror (set BBMN_DATA_MIRROR); the full-data checks need one")
    return path
