"""Regenerates every results table and quoted number of the docs from docs/results.

    python -m benchmarks.docs            # rewrite the generated blocks of README.md, docs/*.md
    python -m benchmarks.docs --check    # exit 1 where a page differs from what it would write

A generated block sits between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`:
on lines of their own around a table or a list, or inside a sentence around a number.
`RENDERERS[NAME]` names the one results file the block reads and the function that turns
that file's data into Markdown. Aggregates over seeds come from `benchmarks.stats` (an IQM
of fewer than 4 seeds is labelled a mean). A block whose file is optional and absent says
"not yet measured".

Modules: `engine` (markers, registry, formatting, the command) and one module of
renderers per page family (`rl`, `representation`, `consistency`, `vae`), plus `index` (the
slots for results to come and the provenance of every results file).
"""

from benchmarks.docs import consistency, index, representation, rl, vae
from benchmarks.docs.engine import RENDERERS, Renderer, fill, load, main, pages, render, renders

__all__ = [
    "RENDERERS",
    "Renderer",
    "fill",
    "consistency",
    "index",
    "load",
    "main",
    "pages",
    "render",
    "renders",
    "representation",
    "rl",
    "vae",
]
