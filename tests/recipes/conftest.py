"""One real 3-node cluster per test module (LocalCluster comes from tests/integration, which
the top-level conftest puts on sys.path), with sessions allowed to be as short as 0.5 s."""

from __future__ import annotations

import pytest
from local_cluster import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(str(tmp_path_factory.mktemp("c")), node_args=("--min-session-ms", "500"))
    try:
        yield c
    finally:
        c.down()
