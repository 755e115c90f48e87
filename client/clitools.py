"""What the client tools' command lines share (``job``, ``account``, ``dataset``).

Exit codes are node/cli.py's: 0 success, 1 an error (one ``error: ...`` line), 2 bad usage.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def command_group(subparsers: Any, name: str, help: str, description: str) -> tuple[argparse.ArgumentParser, Any]:
    """``pouw-node NAME SUBCOMMAND``: the group's parser (which prints its help and exits 2
    when no subcommand is given) and the subparsers to add its subcommands to."""
    group = subparsers.add_parser(name, help=help, description=description)
    commands = group.add_subparsers(dest=f"{name}_command", metavar=f"{name.upper()}_COMMAND")

    def usage(args: argparse.Namespace) -> int:
        group.print_help(sys.stderr)
        return EXIT_USAGE

    group.set_defaults(func=usage)
    return group, commands


def describe_os_error(exc: OSError) -> str:
    """``path: reason`` for a file error, as one line."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


__all__ = ["command_group", "describe_os_error", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE"]
