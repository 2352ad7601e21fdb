"""``triplegain demo``: the whole loop end to end on the embedded servers."""

from __future__ import annotations

import argparse

from streamer.cli.options import positive_int
from streamer.cli.replay import add_source_arguments
from triplegain_core.config import Settings


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``demo``."""
    demo = commands.add_parser("demo", help="the whole loop end to end on the embedded servers")
    add_source_arguments(demo)
    demo.add_argument("--no-dagster", action="store_true", help="skip materializing the assets")
    demo.add_argument("--deliberate-every", type=positive_int, default=60, metavar="MINUTES",
                      help="market minutes between the models' rounds, when a model is configured")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.demo.run import run_demo_command

    return run_demo_command(settings, args)
