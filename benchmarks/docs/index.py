"""Renderers of what is measured where: the slots for results to come and the index of
every results file's provenance."""

from __future__ import annotations

from benchmarks import stats
from benchmarks.docs.engine import (
    ci,
    machine,
    num,
    provenance_of,
    renders,
    table,
)

# ------------------------------------------------------------- slots for results to come


@renders("readme.minatar", "minatar_dqn.json", optional=True)
def readme_minatar(data: dict) -> str:
    rows = []
    for game, g in data["games"].items():
        paper = g.get("paper_dqn_at_frames")
        published = g.get("paper_dqn", {})
        rows.append(
            [
                game,
                len(g["seeds"]),
                f"{g['frames']:,}",
                ci(stats.summary(g["train_return"])),
                "n/a" if paper is None else num(paper),
                " / ".join(num(v) for v in published.values()) or "n/a",
                f"{g['env_steps_per_second']:,.0f}" if g.get("env_steps_per_second") else "-",
            ]
        )
    head = [
        "game",
        "seeds",
        "frames",
        "training return, last 10% of frames, IQM [95% CI]",
        "the paper's DQN at equal frames",
        "the paper's DQN at 1M / 2M frames (read off its figure)",
        "env steps / s",
    ]
    figure = "![DQN learning curves on the MinAtar games](docs/figures/minatar_dqn.png)"
    return table(head, rows) + "\n\n" + figure + "\n\nResults: `docs/results/minatar_dqn.json`."


@renders("readme.brax", "brax.json", optional=True)
def readme_brax(data: dict) -> str:
    rows = [
        [
            algo.upper(),
            f"`{a['config']['env']}`",
            len(a["final_return"]),
            f"{a['env_steps']:,}",
            ci(stats.summary(a["curve"]["return"][0])),
            ci(a["iqm"]),
            f"{a['env_steps_per_second']:,.0f}",
        ]
        for algo, a in data["algorithms"].items()
    ]
    head = [
        "algorithm",
        "task",
        "seeds",
        "env steps per seed",
        "untrained (step 0), IQM [95% CI]",
        "final evaluation return, IQM [95% CI]",
        "env steps / s (all seeds)",
    ]
    figure = "![TD3 and SAC learning curves on Brax](docs/figures/brax.png)"
    return (
        table(head, rows)
        + "\n\n"
        + data["published"]
        + "\n\n"
        + figure
        + "\n\nResults: `docs/results/brax.json`."
    )


@renders("readme.cross-field", "cross_field.json", optional=True)
def readme_cross_field(data: dict) -> str:
    """The best age per algorithm, and which of the study's programs the file lacks."""
    from benchmarks.cross_field import report

    study = data.get("study", {})
    expected = report.expected_programs(bool(study.get("quick")))
    lines = report.completeness(data, expected) + report.best_age_table(data["rows"])
    return "\n".join(lines) + "\n\nResults: `docs/results/cross_field.json`."


# --------------------------------------------------------------------- where results came from


@renders("repro.index", "*.json")
def repro_index(files: dict) -> str:
    rows = []
    for name, data in files.items():
        prov = provenance_of(data)
        commit = prov.get("commit") or prov.get("data_committed_in")
        rows.append(
            [
                f"`{name}`",
                machine(prov) if prov else "not recorded",
                f"`{prov['command']}`" if prov.get("command") else "-",
                commit[:7] if commit else "-",
                "reconstructed" if prov.get("reconstructed") else "recorded",
            ]
        )
    return table(["results file", "machine", "command", "commit", "provenance"], rows)


@renders("repro.demo-row", "rl_dqn_targets.json")
def repro_demo_row(data: dict) -> str:
    return ci(stats.summary(data["no target"]["final_return"]))
