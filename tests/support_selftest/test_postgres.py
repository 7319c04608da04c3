"""Self-test for tests/support/postgres.py against a real PostgreSQL server."""

from __future__ import annotations

import socket
import time

import sqlalchemy as sa

from tests.support.ports import port_is_open
from tests.support.postgres import PostgresCluster


def _scalar(url: str, sql: str) -> object:
    engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar_one()
    finally:
        engine.dispose()


def test_url_is_loopback_and_usable(postgres_cluster: PostgresCluster, postgres_url: str) -> None:
    assert postgres_url.startswith(
        f"postgresql+psycopg://postgres@127.0.0.1:{postgres_cluster.port}/"
    )
    dbname = postgres_url.rsplit("/", 1)[1]
    assert _scalar(postgres_url, "SELECT current_database()") == dbname
    assert _scalar(postgres_url, "SHOW listen_addresses") == "127.0.0.1"
    # Fresh and empty: no user tables.
    count = _scalar(
        postgres_url,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    assert count == 0


def test_fresh_database_is_isolated(postgres_cluster: PostgresCluster) -> None:
    started = time.monotonic()
    a = postgres_cluster.fresh_database("iso")
    b = postgres_cluster.fresh_database("iso")
    assert time.monotonic() - started < 10
    assert a != b
    engine = sa.create_engine(a)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x int)"))
    finally:
        engine.dispose()
    assert _scalar(b, "SELECT count(*) FROM information_schema.tables WHERE table_name = 't'") == 0


def test_not_listening_on_other_addresses(postgres_cluster: PostgresCluster) -> None:
    # Only 127.0.0.1 is bound, so another loopback address must be refused.
    assert port_is_open("127.0.0.1", postgres_cluster.port)
    assert not port_is_open("127.0.0.2", postgres_cluster.port, timeout=1)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.3", postgres_cluster.port)) != 0


def test_stop_and_start_keeps_port_and_data(postgres_cluster: PostgresCluster) -> None:
    url = postgres_cluster.fresh_database("outage")
    engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE kept (x int)"))
            conn.execute(sa.text("INSERT INTO kept VALUES (42)"))
        port = postgres_cluster.port
        postgres_cluster.stop()
        assert not postgres_cluster.is_running()
        assert not port_is_open("127.0.0.1", port)
        postgres_cluster.start()
        assert postgres_cluster.port == port
        with engine.connect() as conn:  # pool_pre_ping replaces the dead connection
            assert conn.execute(sa.text("SELECT x FROM kept")).scalar_one() == 42
        # Crash-style stop is recovered too.
        postgres_cluster.stop(mode="immediate")
        postgres_cluster.start()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM kept")).scalar_one() == 42
    finally:
        engine.dispose()
