"""`jem-bot bench fanout|webhook|client`: the benchmarks; each prints a table, or JSON with --json.

Each benchmark's module (bot.bench.*) declares its own options and runs it; this module only lists them. All three
are imported whenever `bench` runs, for its parser: the cost (SQLAlchemy, the Graph client) falls on benchmarks,
never on the other commands.
"""

from __future__ import annotations

import argparse

from bot.bench import client, fanout, webhook
from bot.runtime import Command
from bot.settings import Settings

BENCHMARKS: tuple[tuple[str, str, Command], ...] = (
    ("fanout", "dispatch throughput through the real ledger against the simulator", fanout),
    ("webhook", "latency of signed webhook POSTs", webhook),
    ("client", "Graph client throughput against a local server with injected latency", client),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    benchmarks = parser.add_subparsers(dest="action", required=True, metavar="BENCHMARK")
    for name, help_, benchmark in BENCHMARKS:
        bench_parser = benchmarks.add_parser(name, help=help_)
        bench_parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        benchmark.add_arguments(bench_parser)


def run(settings: Settings, args: argparse.Namespace) -> None:
    benchmark = next(benchmark for name, _, benchmark in BENCHMARKS if name == args.action)
    benchmark.run(settings, args)
