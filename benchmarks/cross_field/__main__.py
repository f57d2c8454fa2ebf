"""The cross-field study: one command to run it, one to report it.

    python -m benchmarks.cross_field run --quick --out /tmp/xf_quick
    python -m benchmarks.cross_field run                     # the full study, resumable
    python -m benchmarks.cross_field report                  # docs/cross_field.md, figures
    python -m benchmarks.cross_field report --from /tmp/xf_quick/cross_field.json \\
        --out /tmp/xf_quick

`run` trains every program of the chosen fields, each in its own folder under `--out`
(a finished program is read back, an interrupted one resumes from its checkpoints), and
writes the rows after every program: the full study to docs/results/cross_field.json,
`--quick` to `<out>/cross_field.json`. Rows of fields not run this time are kept. The
`theory` entry of `--fields` (on by default) then measures and predicts the linear map of
`benchmarks.cross_field.theory` into the file beside the rows (`cross_field_theory.json`),
which `report` reads to place each field's best age on it.
"""

from __future__ import annotations

import importlib
import os
import sys

from benchmarks import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "docs", "results", "cross_field.json")
FIELD_MODULES = {
    "rl": "benchmarks.cross_field.rl",
    "generative": "benchmarks.cross_field.generative",
    "representation": "benchmarks.cross_field.representation",
}
THEORY = "theory"  # not a field of rows: the linear map of benchmarks.cross_field.theory
SEEDS = {True: 3, False: 5}
PROG = "python -m benchmarks.cross_field"


class Only:
    """A field module restricted to the programs named in `names`."""

    def __init__(self, module, names: set[str]):
        self.module, self.names = module, names

    def programs(self, quick: bool):
        return [p for p in self.module.programs(quick) if p.name in self.names]

    def __getattr__(self, name):
        return getattr(self.module, name)


def field_modules(names: list[str], only: set[str] | None = None) -> dict:
    """The field modules by name; a field whose module is not there yet is skipped."""
    out = {}
    for name in names:
        if name == THEORY:
            continue
        if name not in FIELD_MODULES:
            known = ", ".join([*FIELD_MODULES, THEORY])
            cli.fail(PROG, f"--fields {name}: unknown field; fields: {known}")
        try:
            module = importlib.import_module(FIELD_MODULES[name])
        except ModuleNotFoundError as error:
            if error.name != FIELD_MODULES[name]:
                raise
            print(f"[cross_field] field {name!r} has no module yet: skipped", file=sys.stderr)
            continue
        out[name] = Only(module, only) if only else module
    return out


def run(args) -> int:
    layout = cli.configure_layout(args)
    from benchmarks import provenance
    from benchmarks.cross_field import common

    quick = args.quick
    out = args.out or os.path.join("runs", "cross_field_quick" if quick else "cross_field")
    path = args.json or (os.path.join(out, "cross_field.json") if quick else RESULTS)
    seeds = args.seeds or SEEDS[quick]
    only = set(args.only.split(",")) if args.only else None
    names = args.fields.split(",")
    fields = field_modules(names, only)
    with_theory = THEORY in names and not only
    known = {p.name for m in fields.values() for p in getattr(m, "module", m).programs(quick)}
    if only and only - known:
        cli.fail(
            PROG,
            f"--only {args.only}: no program {sorted(only - known)[0]!r} in the "
            f"chosen fields; programs: {', '.join(sorted(known))}",
        )
    if args.list:
        for name, module in fields.items():
            for p in module.programs(quick):
                print(f"{name}/{p.name}: {p.algorithm}, {p.describe()} x {seeds} seeds")
        if with_theory:
            print(f"{THEORY}: the toy and Baird's grids of learning rate x age x mechanism")
        return 0
    started = provenance.now()
    kept = common.read(path) if os.path.exists(path) else {}

    def rerun(field: str, program: str) -> bool:
        """Whether this run writes the rows of `field/program` (the rest are kept)."""
        return field in fields and (only is None or program in only)

    earlier = [r for r in kept.get("rows", []) if not rerun(r["field"], r["program"])]

    def write_rows(rows, programs):
        by_field = dict(kept.get("provenance_by_field", {}))
        by_field.update({name: provenance.provenance(started) for name in fields})
        summary = {k: v for k, v in kept.get("programs", {}).items() if not rerun(*k.split("/"))}
        definitions = dict(kept.get("definitions", {}))
        definitions.update({n: getattr(m, "DEFINITION", "") for n, m in fields.items()})
        common.write(
            path,
            earlier + rows,
            provenance.provenance(started),
            provenance_by_field=by_field,
            study={"quick": quick, "seeds": seeds},
            definitions=definitions,
            programs={**summary, **programs},
        )

    if fields:
        common.run_study(
            fields,
            quick=quick,
            seeds=seeds,
            runs_dir=os.path.join(out, "runs"),
            write_rows=write_rows,
        )
        print(f"[cross_field] rows: {path}", file=sys.stderr)
    if with_theory:
        from benchmarks.cross_field import theory

        theory_path = theory_file(path)
        print(f"[cross_field] {THEORY}: the toy and Baird's grids x {seeds} seeds", file=sys.stderr)
        results = theory.run(theory_path, seeds, layout=layout)
        for name, r in results["problems"].items():
            print(f"[cross_field] {THEORY}/{theory.agreement_line(name, r)}", file=sys.stderr)
        print(f"[cross_field] {THEORY}: {theory_path}", file=sys.stderr)
    return 0


def theory_file(rows_path: str) -> str:
    """Where the theory results go beside a rows file (`docs/results/cross_field.json` ->
    `docs/results/cross_field_theory.json`)."""
    root, ext = os.path.splitext(rows_path)
    return f"{root}_theory{ext or '.json'}"


def report(args) -> int:
    from benchmarks.cross_field import report as report_lib

    return report_lib.main(args)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "report"):
        argv = ["run", *argv]
    parser = cli.Parser(prog=PROG, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=cli.Parser)
    r = commands.add_parser("run", help="train the study's programs and write its rows")
    r.add_argument("--quick", action="store_true", help="the small study (3 seeds)")
    r.add_argument("--out", default=None, help="run folder (runs/cross_field[_quick])")
    r.add_argument("--json", default=None, help="rows file (see the module docstring)")
    r.add_argument(
        "--fields",
        default=",".join([*FIELD_MODULES, THEORY]),
        help="comma-separated fields (%(default)s)",
    )
    r.add_argument(
        "--seeds", type=cli.positive_int, default=None, help="seeds per cell (quick 3, full 5)"
    )
    r.add_argument(
        "--only",
        default=None,
        help="comma-separated program names: only these are run and their rows rewritten; "
        "the other rows are kept as they were (a plain run, which reads finished programs "
        "back, renormalizes a field over all of its rows)",
    )
    r.add_argument("--list", action="store_true", help="list the programs and stop")
    cli.add_layout_flag(r)
    p = commands.add_parser("report", help="figures and docs/cross_field.md from the rows")
    p.add_argument("--from", dest="source", default=RESULTS, help="rows file")
    p.add_argument("--out", default=None, help="folder of the page and figures (default docs/)")
    p.add_argument("--theory", default=None, help="theory results (default: beside the rows file)")
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    raise SystemExit(main())
