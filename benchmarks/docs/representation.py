"""Renderers of the self-supervised learning page: BYOL's ablation, MoCo vs BYOL, the blur."""

from __future__ import annotations

from benchmarks import stats
from benchmarks.docs.engine import (
    machine,
    num,
    renders,
    seed_mean,
    span,
    table,
)

# ------------------------------------------------------------------ self-supervised learning


def _pct(values) -> tuple[str, str]:
    """The seeds' mean (IQM from 4 seeds) in %, with the per-seed values, and its label."""
    value, label = seed_mean(values)
    return f"{100 * value:.1f} ({', '.join(f'{100 * v:.1f}' for v in values)})", label


def _setting(row: dict) -> str:
    for key in ("base_momentum", "momentum", "temperature"):
        if key in row:
            return f"{key}={row[key]}"
    return "-"


def _baselines(data: dict, columns: int) -> list[list[str]]:
    rows = [
        [
            "raw pixels",
            "-",
            *(f"{100 * data['raw_pixels'][k]:.1f}" for k in ("linear_probe", "knn")),
        ]
    ]
    rows.append(
        ["random encoder", "-"]
        + [f"{100 * data['random_encoder'][k]:.1f}" for k in ("linear_probe", "knn")]
    )
    return [r + ["-"] * (columns - len(r)) for r in rows]


@renders("ssl.ablation", "byol_ablation.json")
def ssl_ablation(data: dict) -> str:
    rows = []
    for r in data["rows"]:
        probe, label = _pct(r["linear_probe_seeds"])
        rows.append(
            [
                "yes" if "True" in r["program"] else "no",
                r["base_momentum"],
                probe,
                f"{100 * seed_mean(r['knn_seeds'])[0]:.1f}",
                f"{seed_mean(r['projection_std_seeds'])[0]:.3f}",
                f"{r['lag']:.3f}",
                f"{r['collapsed_seeds']}/{data['seeds']}",
            ]
        )
    head = [
        "predictor",
        "base momentum",
        f"linear probe, % ({label}; seeds)",
        "k-NN, %",
        "projection std",
        "lag",
        "collapsed seeds",
    ]
    return table(head, rows + _baselines(data, len(head)))


@renders("ssl.ablation-findings", "byol_ablation.json")
def ssl_ablation_findings(data: dict) -> str:
    out = []
    for predictor in (False, True):
        rows = [r for r in data["rows"] if ("True" in r["program"]) == predictor]
        runs = data["seeds"] * len(rows)
        collapsed = sum(r["collapsed_seeds"] for r in rows)
        probes = ", ".join(
            f"{100 * seed_mean(r['linear_probe_seeds'])[0]:.1f} % at base {r['base_momentum']}"
            for r in rows
        )
        out.append(
            f"- {'With' if predictor else 'Without'} the predictor: {collapsed} of {runs} runs "
            f"collapse; final projection std {span([r['projection_std'] for r in rows], 3)}, "
            f"encoder features' std {span([r['embedding_std'] for r in rows], 3)}; lag "
            f"{span([r['lag'] for r in rows], 3)}; linear probe {probes}."
        )
    best = max(data["rows"], key=lambda r: seed_mean(r["linear_probe_seeds"])[0])
    value = 100 * seed_mean(best["linear_probe_seeds"])[0]
    raw, rand = (100 * data[k]["linear_probe"] for k in ("raw_pixels", "random_encoder"))
    out.append(
        f"- Best linear probe: {value:.1f} % (predictor, base {best['base_momentum']}; every seed "
        f"at or above {100 * min(best['linear_probe_seeds']):.1f} %), against {raw:.1f} % for raw "
        f"pixels and {rand:.1f} % for the random encoder: {value - raw:+.1f} and "
        f"{value - rand:+.1f} points."
    )
    knn = max(100 * seed_mean(r["knn_seeds"])[0] for r in data["rows"])
    out.append(
        f"- k-NN: raw pixels {100 * data['raw_pixels']['knn']:.1f} %, the best learned "
        f"encoder {knn:.1f} %."
    )
    return "\n".join(out)


@renders("ssl.ablation-time", "byol_ablation.json")
def ssl_ablation_time(data: dict) -> str:
    programs = {(r["run_seconds"], r["compile_seconds"]) for r in data["rows"]}
    runs = len(data["rows"]) // len(programs) * data["seeds"]
    return (
        f"each of the {len(programs)} programs ({runs} runs) trained for "
        f"{span([p[0] for p in programs])} s after {span([p[1] for p in programs], 0)} s of "
        f"compile on {machine(data['provenance'])}"
    )


@renders("ssl.compare", "ssl_compare.json")
def ssl_compare(data: dict) -> str:
    rows = []
    for r in data["rows"]:
        probe, label = _pct(r["linear_probe_seeds"])
        rows.append(
            [
                r["label"],
                _setting(r),
                probe,
                f"{100 * seed_mean(r['knn_seeds'])[0]:.1f}",
                f"{seed_mean(r['projection_std_seeds'])[0]:.3f}",
                f"{r['lag']:.3f}",
                num(r["run_seconds"], 0),
                num(r["compile_seconds"], 0),
            ]
        )
    head = [
        "method",
        "setting",
        f"linear probe, % ({label}; seeds)",
        "k-NN, %",
        "projection std",
        "lag",
        "run s",
        "compile s",
    ]
    return table(head, rows + _baselines(data, len(head)))


@renders("readme.ssl", "ssl_compare.json")
def readme_ssl(data: dict) -> str:
    rows = [[r["label"], _setting(r), _pct(r["linear_probe_seeds"])[0]] for r in data["rows"]]
    label = stats.label(data["seeds"])
    rows += [
        [name, "-", f"{100 * data[key]['linear_probe']:.1f}"]
        for name, key in (("raw pixels", "raw_pixels"), ("random encoder", "random_encoder"))
    ]
    return table(
        ["method", "setting", f"linear probe, % ({label} of {data['seeds']} seeds; seeds)"], rows
    )


@renders("ssl.compare-findings", "ssl_compare.json")
def ssl_compare_findings(data: dict) -> str:
    rows = data["rows"]
    probe = {id(r): 100 * seed_mean(r["linear_probe_seeds"])[0] for r in rows}
    best = max(rows, key=lambda r: probe[id(r)])
    contrastive = [r["projection_std"] for r in rows if r["label"].startswith("MoCo")]
    byol = [r["projection_std"] for r in rows if r["label"] == "BYOL"]
    v2 = [r for r in rows if r["label"] == "MoCo v2"]
    raw = 100 * data["raw_pixels"]["linear_probe"], 100 * data["raw_pixels"]["knn"]
    beat_knn = [r["label"] for r in rows if 100 * seed_mean(r["knn_seeds"])[0] > raw[1]]
    return "\n".join(
        [
            f"- Best linear probe: {best['label']} ({_setting(best)}), {probe[id(best)]:.1f} %, "
            f"every seed {span([100 * v for v in best['linear_probe_seeds']])} %. Every method's "
            f"probe is {'above' if min(probe.values()) > raw[0] else 'not always above'} raw "
            f"pixels' {raw[0]:.1f} %; at k-NN {', '.join(beat_knn) or 'none'} beats raw pixels' "
            f"{raw[1]:.1f} %.",
            f"- Projection std: MoCo {span(contrastive, 3)}, BYOL {span(byol, 3)} (isotropic "
            f"64-d outputs: 0.125; collapsed: below {data.get('collapse_std_threshold', 0.01)}).",
            "- MoCo v2's key encoder: "
            + "; ".join(
                f"m = {r['momentum']}: lag {r['lag']:.3f}, probe "
                f"{100 * seed_mean(r['linear_probe_seeds'])[0]:.1f} %"
                for r in v2
            )
            + ".",
        ]
    )


def _byol_at(momentum: float):
    def render(data: dict) -> str:
        row = next(
            r
            for r in data["rows"]
            if r.get("base_momentum") == momentum and "False" not in r["program"]
        )
        return f"{100 * seed_mean(row['linear_probe_seeds'])[0]:.1f} %"

    return render


renders("ssl.byol-099-ablation", "byol_ablation.json")(_byol_at(0.99))
renders("ssl.byol-099-compare", "ssl_compare.json")(_byol_at(0.99))


@renders("ssl.blur", "moco_v2_blur.json")
def ssl_blur(data: dict) -> str:
    rows = []
    for r in data["rows"]:
        probe, label = _pct(r["linear_probe_seeds"])
        rows.append(
            [
                " / ".join(map(str, r["blur_prob"])),
                probe,
                _pct(r["knn_seeds"])[0],
                f"{seed_mean(r['projection_std_seeds'])[0]:.3f}",
                num(r["run_seconds"], 0),
            ]
        )
    rows.append(
        [
            "raw pixels",
            f"{100 * data['raw_pixels']['linear_probe']:.1f}",
            f"{100 * data['raw_pixels']['knn']:.1f}",
            "-",
            "-",
        ]
    )
    samples = data["rows"][0]["samples"]
    head = [
        "blur probability, view 1 / view 2",
        f"linear probe, % ({label}; seeds)",
        "k-NN, %",
        "projection std",
        "run s",
    ]
    return (
        table(head, rows) + f"\n\n{samples:,} samples per run, {data['seeds']} seeds, "
        f"{machine(data['provenance'])}; `{data['command']}`."
    )
