"""The fault suite, short: 1,000 CRM orders through the real stack on private servers while
the nemesis SIGKILLs the daemon and its parts (or, with ``HUB_APART``, its forked part),
restarts the broker, raises a memory alarm, and takes MariaDB and PostgreSQL down; then the
independent reconciliation.

The full run is ``make faults`` (see docs/reliability.md).
"""

from __future__ import annotations

import pytest

from tests.faults.run import Config, run

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.mariadb]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("apart", [False, True], ids=["process-per-part", "hub-apart"])
def test_1000_orders_under_faults_none_lost_none_doubled(apart: bool) -> None:
    """Each part in a process of its own (the nemesis kills the daemon or one part), or one
    daemon that forks its ERP applier (``HUB_APART``; it kills the daemon or that child)."""
    config = Config(
        orders=1000, rate=20.0, converge_timeout=240.0, converge_within=60.0, apart=apart,
        counts={"kill": 3, "broker-restart": 2, "memory-alarm": 1, "mariadb-outage": 1,
                "pg-restart": 1},
    )
    report = run(config)
    table = report.details()
    print(table)
    r = report.reconciliation
    assert r is not None, table
    assert r.problems() == [], table
    assert not r.lost and not r.duplicated, table
    assert r.confirmed == r.attempted == config.orders, table
    assert not [f for f in report.faults if f.error], table
    assert len(report.faults) == sum(config.counts.values()), table
    assert report.recovered == len(report.faults), table
    assert not report.unexpected_exits, table
    assert report.convergence is not None and report.convergence <= 60, table
    assert all(code == 0 for code in report.stop_codes.values()), table
