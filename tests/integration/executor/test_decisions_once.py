"""Two `triplegain execute` processes started at once, again and again, each killed between a
decision's fill and its record: no decision is traded twice, none is left untraded.

A cycle's trail (the fill and the decision's "executed" record with it) commits as one
PostgreSQL transaction: a kill between the two loses both, and the decision is traded by the
next executor. The intake's recovery of a decision whose order exists without its record
(tests/integration/executor/test_decision_delivery.py) stays for a host writing outside it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psycopg
import redis

from tests.support.decision_executors import prepare, run, start_executor
from triplegain_core.contracts.decision_streams import DECISIONS_STREAM, EXECUTOR_GROUP
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.storage.decision_ledger import DecisionLedger
from triplegain_core.storage.executor_lease import ExecutorLease
from triplegain_core.storage.trading_store import TradingStore


def test_two_executors_killed_between_fill_and_record_trade_each_decision_once(
    tmp_path: Path, database_url: str, redis_url: str, db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    ids = prepare(db, redis_client, decisions=3)
    outcome = run(tmp_path, database_url, redis_url, ids, kills=2)
    assert outcome.failures == []
    assert outcome.kills >= 2  # both of a pair may be killed: the second took over the lease
    assert outcome.traded_twice == 0
    assert sorted(outcome.fills) == ids  # every decision traded, the swept ones too
    # Of a pair started at once, the second either found the lease held (and said by whom, in one
    # line) or took it over once the first was killed: never did both trade.
    for line in outcome.refusal_lines:
        assert len(line.splitlines()) == 1 and "already traded by the executor on" in line and "pid" in line
    ledger, store = DecisionLedger(db), TradingStore(db)
    for decision_id in ids:
        assert ledger.state(decision_id) is DecisionState.OPEN
        account = f"llm:m{decision_id.removeprefix('d')}"
        assert [p.position_id for p in store.positions(account)] in ([], [f"{account}:{decision_id}"])
        assert ledger.decision_orders(account, decision_id) == ["filled"]
    # Each kill came between a fill and its decision's record, inside the cycle's transaction:
    # the fill was lost with the record, and the decision was traded (once) by the next executor.
    assert sum(outcome.attempts.values()) == sum(outcome.fills.values()) + outcome.kills
    assert redis_client.xpending(DECISIONS_STREAM, EXECUTOR_GROUP)["pending"] == 0


def test_a_second_executor_of_the_account_set_says_who_runs_it_and_exits(
    tmp_path: Path, database_url: str, redis_url: str,
) -> None:
    with ExecutorLease(database_url, "paper"):  # the first executor of account set "paper"
        process = start_executor(tmp_path, database_url, redis_url)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    (line,) = stderr.strip().splitlines()
    assert line.startswith("triplegain: account set 'paper' is already traded by the executor on"
                           f" {socket.gethostname()} (pid {os.getpid()}) since ")
