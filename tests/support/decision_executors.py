"""Several `triplegain execute` processes on one set of decisions, some killed between a fill and
its record: the scenario behind ``BENCH decisions_traded_twice`` and its integration test.

Run as a script, this module is one executor: the real `triplegain execute` command, whose audit
trail notes each LLM entry fill in a log file and, when ``TG_TEST_EXIT_AFTER_FILLS`` is set, ends
the process with ``os._exit`` right after that many fills are stored (the fill is in PostgreSQL,
the decision's "executed" record is not). The fault is the test's: production code has no hook.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from tests.support.decisions import store_approved
from triplegain_core.contracts.decision_streams import DecisionStream
from triplegain_core.contracts.hot_state import HotStatePublisher
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.decisions.published import PublishedDecision
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.model.market import US_PER_MINUTE, Candle
from triplegain_core.model.orders import Fill
from triplegain_core.storage.decision_ledger import DecisionLedger
from triplegain_core.storage.trading_store import TradingStore

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = 1_780_000_000 * 1_000_000 // US_PER_MINUTE * US_PER_MINUTE
PRICE = 0.5
# A replayed market: its age is judged on its own clock, not the wall clock (see [guards]).
CONFIG = """symbols = ["XRP/USDT"]
[strategies]
enabled = []
technical_agent = false
[guards]
clock = "market"
"""
LEASE_REFUSED = 2  # UserMistake's exit code: a second executor of the account set
KILLED = 137  # the exit code of this driver's crash


@dataclass(slots=True)
class Outcome:
    """What the executors did over a run."""

    fills: Counter[str] = field(default_factory=Counter)  # decision id -> entry fills committed
    # decision id -> entry fills made by a process, committed or lost with it when it was killed
    attempts: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    lease_refusals: int = 0
    refusal_lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # any other end: its exit code and stderr
    starts: int = 0

    @property
    def traded_twice(self) -> int:
        """Decisions filled more than once."""
        return sum(1 for count in self.fills.values() if count > 1)


def prepare(db: psycopg.Connection, client: redis.Redis, decisions: int) -> list[str]:
    """A market the executors read from the start, and ``decisions`` approved decisions, one per
    LLM account: the even ones published, the odd ones only stored (the sweeper publishes them)."""
    candles = [Candle("XRP/USDT", "1m", T0 + m * US_PER_MINUTE, PRICE, PRICE * 1.001, PRICE * 0.999, PRICE,
                      100.0, 5) for m in range(11)]
    HotStatePublisher(client).publish([], [], candles, {"ts_us": 0})
    ledger, stream = DecisionLedger(db), DecisionStream(client)
    ids = []
    for i in range(decisions):
        model = f"m{i}"
        decision = TradingDecision(action=Action.LONG, symbol="XRP/USDT", confidence=0.8, position_size_pct=5.0,
                                   leverage=1.0, entry=PRICE, stop_loss=PRICE * 0.99, take_profit=PRICE * 1.02,
                                   invalidation="x", reasoning="y", model=model)
        published = PublishedDecision.make(f"d{i}", f"llm:{model}", model, decision, T0 + 10 * US_PER_MINUTE, 3600)
        store_approved(ledger, published)
        if i % 2 == 0:
            stream.publish(published)
        ids.append(published.decision_id)
    return ids


def start_executor(workdir: Path, database_url: str, redis_url: str, fill_log: Path | None = None,
                   exit_after: int = 0) -> subprocess.Popen[str]:
    """`triplegain execute --from-start` on one XRP/USDT market, no strategy, as a process;
    its LLM entry fills noted in ``fill_log`` and, with ``exit_after``, killed after that many."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "triplegain.toml").write_text(CONFIG)
    fill_log = fill_log or workdir / "fills.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIPLEGAIN_")}
    env.update({
        "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH")))),
        "TRIPLEGAIN_DATABASE_URL": database_url, "TRIPLEGAIN_REDIS_URL": redis_url,
        "TRIPLEGAIN_DATA_DIR": str(workdir / "data"), "TRIPLEGAIN_CONFIG": str(workdir / "triplegain.toml"),
        "TG_TEST_FILL_LOG": str(fill_log), "TG_TEST_EXIT_AFTER_FILLS": str(exit_after),
    })
    return subprocess.Popen([sys.executable, "-m", "tests.support.decision_executors", "execute", "--from-start"],
                            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run(workdir: Path, database_url: str, redis_url: str, ids: list[str], kills: int,
        timeout_s: float = 120.0) -> Outcome:
    """Start two executors at once, again and again: while fewer than ``kills`` were killed,
    each runs until it is killed right after its first LLM fill (the second of a pair, if it
    takes the lease over, too); then a last pair runs until every decision is decided, and is
    stopped. ``kills`` must be below ``len(ids)`` (each kill needs a decision to fill). Returns
    what they did."""
    assert kills < len(ids)
    fill_log = workdir / "fills.log"
    workdir.mkdir(parents=True, exist_ok=True)
    fill_log.touch()
    outcome = Outcome()
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_url, autocommit=True) as conn:
        ledger = DecisionLedger(conn)
        while time.monotonic() < deadline:
            last = outcome.kills >= kills
            pair = [start_executor(workdir, database_url, redis_url, fill_log, 0 if last else 1) for _ in range(2)]
            outcome.starts += 2
            while any(p.poll() is None for p in pair) and time.monotonic() < deadline:
                # The last pair is stopped once every decision is decided and the one refused the
                # lease has left (stopping it too would cut its answer short).
                running = [p for p in pair if p.poll() is None]
                if last and len(running) == 1 and all(ledger.state(i) is not DecisionState.APPROVED for i in ids):
                    running[0].send_signal(signal.SIGTERM)
                    break
                time.sleep(0.2)
            for process in pair:
                _, stderr = process.communicate(timeout=60)
                if process.returncode == LEASE_REFUSED:
                    outcome.lease_refusals += 1
                    outcome.refusal_lines.append(stderr.strip())
                elif process.returncode in (KILLED, -signal.SIGKILL):
                    outcome.kills += 1
                elif not (last and process.returncode == 0):
                    outcome.failures.append(f"exit {process.returncode}: {stderr.strip()[-2000:]}")
            if last:
                break
        for line in fill_log.read_text().splitlines():
            outcome.attempts[line.split()[1]] += 1
        # A cycle's trail commits as one transaction: a fill whose process was killed before the
        # commit (with its decision's record) is not in PostgreSQL, and the decision is traded by
        # the next executor. What was traded is what was committed.
        for (order_id,) in conn.execute("SELECT order_id FROM fills WHERE account LIKE 'llm:%%'"
                                        " AND order_id LIKE '%%:entry'").fetchall():
            account = order_id.split(":")[0] + ":" + order_id.split(":")[1]
            outcome.fills[order_id.removeprefix(f"{account}:").removesuffix(":entry")] += 1
    return outcome


class _CrashingStore(TradingStore):
    """The executor's audit trail, noting each LLM entry fill once stored and ending the process
    after the configured number of them."""

    fills = 0

    def record_fill(self, fill: Fill) -> None:
        super().record_fill(fill)
        if not (fill.account.startswith("llm:") and fill.order_id.endswith(":entry")):
            return
        decision_id = fill.order_id.removeprefix(f"{fill.account}:").removesuffix(":entry")
        with open(os.environ["TG_TEST_FILL_LOG"], "a") as log:
            log.write(f"{os.getpid()} {decision_id}\n")
            log.flush()
            os.fsync(log.fileno())
        _CrashingStore.fills += 1
        if _CrashingStore.fills == int(os.environ["TG_TEST_EXIT_AFTER_FILLS"]):
            os._exit(KILLED)


if __name__ == "__main__":
    from streamer.cli import execute
    from streamer.cli.main import main

    execute.TradingStore = _CrashingStore  # type: ignore[misc]
    sys.exit(main(sys.argv[1:]))
