"""What every `python -m benchmarks.*` command shares: a usage error is one line on stderr
and exit status 2 (no traceback, nothing written); counts are checked as they are parsed;
`--cpu-layout` chooses the CPU layout before JAX starts (`benchmarks.cpu_layout`)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from benchmarks import cpu_layout


def fail(prog: str, message: str) -> NoReturn:
    """Ends the command: `prog: error: message` on stderr, exit status 2."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


class Parser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose errors are one line (`fail`), without the usage."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        fail(self.prog, f"{message} (see --help)")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0; got {text!r}")
    return value


def add_layout_flag(parser: argparse.ArgumentParser) -> None:
    """Adds `--cpu-layout {split,default}` (default: split unless the environment chose)."""
    parser.add_argument(
        "--cpu-layout",
        choices=cpu_layout.LAYOUTS,
        default=None,
        help="split: one JAX CPU device per core, one thread each; default: JAX's own one "
        "device over every core (default: split, unless JAX_NUM_CPU_DEVICES, PJRT_NPROC or "
        "XLA_FLAGS already choose)",
    )


def configure_layout(args: argparse.Namespace) -> str:
    """Sets the CPU layout `args.cpu_layout` asks for; call it before JAX starts."""
    return cpu_layout.configure(getattr(args, "cpu_layout", None))
