"""The command line every benchmark recipe shares: parse, run, and turn a ValueError into one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def recipe_main(name: str, doc: str, add_arguments: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
                run: Callable[[argparse.Namespace], Any], argv: list[str] | None = None) -> int:
    """``run(args)`` with the arguments of ``add_arguments``; 0, or 2 with ``name: error: ...`` on stderr
    for a ValueError (bad input is refused before any work, in one line)."""
    p = add_arguments(argparse.ArgumentParser(prog=name, description=doc.split("\n\n")[0]))
    try:
        run(p.parse_args(argv))
    except ValueError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    return 0
