"""Shared fixtures.  Tests that need the corpora use ``shared_data`` and skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _shared_data_dir() -> Path:
    # Not EMOTION_EDGE_*: the configuration refuses every such variable it does not own, and a
    # test data folder set in the shell would stop `emotion-edge run` in the same shell.
    env = os.environ.get("SHARED_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or $SHARED_DATA_DIR); skips the test when it is absent."""
    path = _shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"corpora not available at {path} (CI has them)")
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


# Property/fuzz tests (tests/test_fuzz_inputs.py) run a bounded number of examples by default;
# `pytest --hypothesis-profile=long tests/test_fuzz_inputs.py` runs them for longer, by hand.
settings.register_profile("long", max_examples=2000, deadline=None)


def pytest_configure(config: pytest.Config) -> None:
    """Open OpenCV the way the command line does, through :func:`edge.optional.cv2`, before any
    test writes a video with it: FFmpeg reads its log level once, when it is first used, and the
    in-process command-line tests expect the product's (quiet without ``-v``).
    ``tests/test_cli_errors.py`` checks the same in a fresh process."""
    from edge import optional
    from edge.errors import MissingDependencyError

    try:
        optional.cv2()
    except MissingDependencyError:
        pass  # the tests that need OpenCV skip without it
