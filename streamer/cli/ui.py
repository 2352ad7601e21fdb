"""``triplegain ui``: the Dagster UI on the project's instance (what ``make ui`` runs),
``triplegain dagster ARGS``: any Dagster command on that instance, and ``triplegain dbt ARGS``:
any dbt command of the analytics project (``dbt/``) on the project's database.

It finds the servers (the configured ones, else the embedded ones, started if needed), gives
Dagster its own database beside the trading one (see
:mod:`triplegain_core.storage.dagster_instance`), puts the instance file into ``$DAGSTER_HOME``
(default ``<data dir>/dagster``, where ``make demo`` left its runs) and runs ``dagster dev`` on
the checkout's workspace, with the daemon that runs the schedules, sensors and run queue.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from streamer.cli.options import positive_int
from triplegain_core.config import Settings
from triplegain_core.storage.dagster_instance import prepare_dagster_home
from triplegain_core.storage.dbt_connection import dbt_environment
from triplegain_core.storage.endpoints import database_url, redis_url
from triplegain_core.storage.migrate import migrate

REPO_ROOT = Path(__file__).resolve().parents[2]


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``ui``, ``dagster`` and ``dbt``."""
    ui = commands.add_parser("ui", help="the Dagster UI on the project's instance (PostgreSQL)",
                             description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    ui.add_argument("--port", type=positive_int, default=3000, help="port (default: 3000)")
    ui.set_defaults(handler=_ui)
    dagster = commands.add_parser(
        "dagster", help="a Dagster command on the project's instance, e.g. dagster asset materialize ...",
        description="Runs `dagster ARGS` with the instance, servers and data folder `triplegain ui` uses.")
    dagster.add_argument("dagster_args", nargs=argparse.REMAINDER, metavar="ARGS", help="dagster's own arguments")
    dagster.set_defaults(handler=_dagster)
    dbt = commands.add_parser(
        "dbt", help="a dbt command of the analytics marts (dbt/) on the project's database, e.g. dbt build",
        description="Runs `dbt ARGS` in the checkout's dbt project, connected to the database every"
                    " TripleGain process uses (TRIPLEGAIN_DATABASE_URL, else the embedded server).")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER, metavar="ARGS", help="dbt's own arguments")
    dbt.set_defaults(handler=_dbt)


def dagster_environment(settings: Settings) -> dict[str, str]:
    """The environment Dagster's processes run in: the servers, the data folder, the instance."""
    db_url = database_url(settings)
    migrate(db_url)
    home = Path(os.environ.get("DAGSTER_HOME") or settings.data_dir / "dagster")
    return {
        **os.environ,
        **prepare_dagster_home(home, REPO_ROOT / "dagster.yaml", db_url),
        "TRIPLEGAIN_DATABASE_URL": db_url,
        "TRIPLEGAIN_REDIS_URL": redis_url(settings),
        "TRIPLEGAIN_DATA_DIR": str(settings.data_dir.resolve()),
    }


def _ui(args: argparse.Namespace, settings: Settings) -> int:
    env = dagster_environment(settings)
    print(f"Dagster UI at http://{args.host}:{args.port} (instance {env['DAGSTER_HOME']}, runs in PostgreSQL)",
          file=sys.stderr, flush=True)
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
               "-h", args.host, "-p", str(args.port)]
    # dagster dev takes this process's place, so a stop signal reaches it (and its webserver,
    # daemon and code server) rather than leaving them behind an exited parent. It stops them
    # with SIGINT: started in the background, they would inherit it ignored and never stop.
    for stop in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.SIG_DFL)
    os.chdir(REPO_ROOT)
    os.execve(sys.executable, command, env)


def _dagster(args: argparse.Namespace, settings: Settings) -> int:
    command = [sys.executable, "-m", "dagster", *args.dagster_args]
    return subprocess.run(command, env=dagster_environment(settings), cwd=REPO_ROOT, check=False).returncode


def _dbt(args: argparse.Namespace, settings: Settings) -> int:
    db_url = database_url(settings)
    migrate(db_url)
    project = REPO_ROOT / "dbt"
    command = [str(Path(sys.executable).with_name("dbt")), *args.dbt_args]
    env = {**os.environ, **dbt_environment(db_url), "DBT_PROJECT_DIR": str(project),
           "DBT_PROFILES_DIR": str(project)}
    return subprocess.run(command, env=env, cwd=project, check=False).returncode
