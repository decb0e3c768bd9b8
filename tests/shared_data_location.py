"""Where the tests-only data are: one place for the tests and the notebooks they run.

``../shared/data`` beside the repository holds real tables that are not shipped (no licence to
redistribute them): the Kaggle Facebook-ads table, the GitGeo labels, real stargazer locations, the
UCI source file. A bare clone does not have it; the tests that need it skip, and the notebooks fall
back to the bundled data. ``JAXMODELS_SHARED_DATA`` names another folder; a path that does not
exist hides the data (``JAXMODELS_SHARED_DATA=/nonexistent make test`` is a bare clone's run).
The notebooks read the same variable (with the same default).
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_ENV = "JAXMODELS_SHARED_DATA"
DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data_dir() -> Path:
    """The folder of tests-only data: ``$JAXMODELS_SHARED_DATA``, else ``../shared/data`` beside
    the repository. It may not exist (a bare clone)."""
    return Path(os.environ.get(SHARED_DATA_ENV) or DEFAULT_SHARED_DATA)
