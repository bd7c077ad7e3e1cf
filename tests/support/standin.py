"""The ``standin`` fixture: a ClickHouse server for a test (``loadtest.clickhouse_standin``, the
package's HTTP interface over the session's chDB directory), with a user and password, stopped
at the test's end. ``stop()``/``start()`` take it down and bring it back on the same port."""

from __future__ import annotations

import pytest

from loadtest.clickhouse_standin import ClickHouseHTTPStandIn
from tests.support.telemetry import CHDB_DIR


@pytest.fixture
def standin():
    CHDB_DIR.mkdir(parents=True, exist_ok=True)
    with ClickHouseHTTPStandIn(str(CHDB_DIR), user="writer", password="s3cret-pw") as ch:
        yield ch
