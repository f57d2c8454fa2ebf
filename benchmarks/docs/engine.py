"""The engine of `python -m benchmarks.docs`: the block markers, the renderer registry,
the formatting every renderer shares, and the command."""

from __future__ import annotations

import argparse
import difflib
import glob
import json
import os
import re
import sys
import textwrap
from collections.abc import Callable
from typing import Any, NamedTuple

from benchmarks import stats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "docs", "results")
BLOCK = re.compile(
    r"<!-- generated:(?P<name>[\w.-]+) -->(?P<body>.*?)<!-- /generated:(?P=name) -->", re.S
)
OPEN = re.compile(r"<!-- generated:([\w.-]+) -->")


class Renderer(NamedTuple):
    """A block's source (a file name under docs/results; a glob for the index), the
    function from the file's data to Markdown, and whether the file may be absent."""

    source: str
    render: Callable[[Any], str]
    optional: bool = False


RENDERERS: dict[str, Renderer] = {}


def renders(name: str, source: str, optional: bool = False):
    """Registers the decorated function as the renderer of block `name`."""

    def register(fn):
        RENDERERS[name] = Renderer(source, fn, optional)
        return fn

    return register


# ------------------------------------------------------------------------------ formatting


def num(x: float, d: int = 1) -> str:
    """`x` with `d` decimals and thousands separators."""
    return f"{x:,.{d}f}"


def ci(s: dict, d: int = 1) -> str:
    """A `stats.summary` as "value [low, high]"."""
    return f"{s['value']:.{d}f} [{s['low']:.{d}f}, {s['high']:.{d}f}]"


def kilo(x: float) -> str:
    return f"{x / 1e3:.1f}k"


def table(head: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def span(values, d: int = 1, unit: str = "") -> str:
    """The range of `values` as "low to high" (one number when both print alike)."""
    lo, hi = min(values), max(values)
    if f"{lo:.{d}f}" == f"{hi:.{d}f}":
        return f"{lo:.{d}f}{unit}"
    return f"{lo:.{d}f}{unit} to {hi:.{d}f}{unit}"


def seed_mean(values) -> tuple[float, str]:
    """The IQM of per-seed values (a mean below 4 seeds) and what it is."""
    values = [v for v in values if v is not None]
    return float(stats.iqm(values)), stats.label(len(values))


def machine(prov: dict) -> str:
    """Where a result ran, in words, from its provenance."""
    if prov.get("machines"):
        return "; ".join(f"{k}: {v}" for k, v in prov["machines"].items())
    if prov.get("backend") == "cpu":
        return f"CPU ({prov['device_kind']}), {prov['cpu_cores']} cores"
    if prov.get("device_kind"):
        return f"{prov.get('device_count') or 1}x {prov['device_kind']}"
    return "not recorded"


def provenance_of(data) -> dict:
    """A results file's provenance (a list-shaped file carries it in every part)."""
    return (data[0] if isinstance(data, list) else data).get("provenance", {})


# ------------------------------------------------------------------------------ the engine


def load(source: str):
    """The data of one results file, or of every file matching a glob (name -> data)."""
    if any(c in source for c in "*?["):
        paths = sorted(glob.glob(os.path.join(RESULTS, source)))
        return {os.path.basename(p): json.load(open(p)) for p in paths}
    with open(os.path.join(RESULTS, source)) as f:
        return json.load(f)


def render(name: str) -> str:
    """The Markdown of block `name`, from its results file."""
    if name not in RENDERERS:
        raise KeyError(f"no renderer for the generated block {name!r}; known: {sorted(RENDERERS)}")
    r = RENDERERS[name]
    if r.optional and not os.path.exists(os.path.join(RESULTS, r.source)):
        return f"Not yet measured (`docs/results/{r.source}` does not exist yet)."
    return r.render(load(r.source)).strip("\n")


def fill(text: str, where: str = "page") -> str:
    """`text` with every generated block rewritten from its results file."""
    opened, closed = OPEN.findall(text), BLOCK.findall(text)
    if len(opened) != len(closed):
        raise ValueError(f"{where}: a `<!-- generated:NAME -->` marker has no matching close")

    def one(m: re.Match) -> str:
        body = render(m["name"])
        if m["body"].startswith("\n"):  # a block: indented as its opening marker (a list item)
            indent = text[text.rfind("\n", 0, m.start()) + 1 : m.start()]
            indent = indent if not indent.strip() else ""
            body = "\n" + textwrap.indent(body, indent) + "\n" + indent
        return f"<!-- generated:{m['name']} -->{body}<!-- /generated:{m['name']} -->"

    return BLOCK.sub(one, text)


def pages() -> list[str]:
    """README.md and every Markdown page directly under docs/."""
    return [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.docs",
        description="Regenerates every results table and quoted number of README.md and docs/*.md.",
    )
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if out of date")
    args = p.parse_args(argv)
    stale = []
    for path in pages():
        with open(path) as f:
            old = f.read()
        rel = os.path.relpath(path, ROOT)
        new = fill(old, rel)
        if new == old:
            continue
        stale.append(rel)
        if args.check:
            diff = difflib.unified_diff(old.splitlines(), new.splitlines(), rel, rel, lineterm="")
            print("\n".join(list(diff)[:40]))
        else:
            with open(path, "w") as f:
                f.write(new)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run python -m benchmarks.docs)", file=sys.stderr)
        return 1
    if not args.check:
        print(f"rewrote {', '.join(stale)}" if stale else f"{len(pages())} pages up to date")
    return 0
