"""The docs' generated blocks: in sync with docs/results, each renderer right on its file."""

import json
import os
import re
import subprocess
import sys

import pytest

from benchmarks import docs, stats
from benchmarks.docs import engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_check_passes_on_the_committed_pages():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.docs", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_block_on_the_pages_has_a_renderer_and_every_renderer_a_block():
    used = set()
    for path in docs.pages():
        used |= set(engine.OPEN.findall(open(path).read()))
    assert used <= set(docs.RENDERERS)
    assert set(docs.RENDERERS) <= used, sorted(set(docs.RENDERERS) - used)


@pytest.mark.parametrize("name", sorted(docs.RENDERERS))
def test_each_renderer_renders_its_file(name):
    text = docs.render(name)
    assert text and "nan" not in text.lower().split()
    source = docs.RENDERERS[name].source
    assert (
        source == "*.json"
        or os.path.exists(os.path.join(engine.RESULTS, source))
        or (docs.RENDERERS[name].optional and text.startswith("Not yet measured"))
    )


def test_check_fails_when_a_page_is_stale(tmp_path, monkeypatch):
    page = tmp_path / "README.md"
    page.write_text("x <!-- generated:repro.demo-row -->0.0<!-- /generated:repro.demo-row --> y\n")
    monkeypatch.setattr(engine, "pages", lambda: [str(page)])
    monkeypatch.setattr(engine, "ROOT", str(tmp_path))
    assert engine.main(["--check"]) == 1
    assert engine.main([]) == 0
    assert engine.main(["--check"]) == 0
    row = docs.render("repro.demo-row")
    assert (
        page.read_text()
        == f"x <!-- generated:repro.demo-row -->{row}<!-- /generated:repro.demo-row --> y\n"
    )


def test_fill_keeps_block_layout_and_rejects_unknown_or_unclosed_markers():
    block = "<!-- generated:rl.sac -->\nold\n<!-- /generated:rl.sac -->"
    assert (
        docs.fill(block)
        == f"<!-- generated:rl.sac -->\n{docs.render('rl.sac')}\n<!-- /generated:rl.sac -->"
    )
    with pytest.raises(KeyError, match="no renderer"):
        docs.fill("<!-- generated:nope -->x<!-- /generated:nope -->")
    with pytest.raises(ValueError, match="no matching close"):
        docs.fill("<!-- generated:rl.sac -->x")


def test_optional_file_absent_says_not_yet_measured(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "RESULTS", str(tmp_path))
    assert docs.render("readme.minatar").startswith("Not yet measured")


def _results(name):
    with open(os.path.join(engine.RESULTS, name)) as f:
        return json.load(f)


def _row(text, label):
    return next(line for line in text.splitlines() if line.startswith(f"| {label} |"))


# ------------------------------------------------------------------ renderers against their files


def test_dqn_table_counts_the_runs_of_a_swept_program():
    data = _results("rl_dqn_targets.json")
    text = docs.render("rl.dqn")
    no_target = stats.summary(data["no target"]["final_return"])
    assert f"{no_target['value']:.1f} [{no_target['low']:.1f}, {no_target['high']:.1f}]" in text
    assert _row(text, "EMA, tau 0.005 per gradient step").split(" | ")[3] == "16"
    assert _row(text, "none (online params, stop-gradient)").split(" | ")[3] == "8"


def test_demo_duration_is_the_programs_time():
    data = _results("rl_dqn_targets.json")
    programs = {
        (v["compile_seconds"], v["run_seconds"]) for k, v in data.items() if k != "provenance"
    }
    minutes = round(sum(c + r for c, r in programs) / 60)
    assert f"about {minutes} minutes on 2 CPU cores" in docs.render("readme.commands")
    assert docs.render("readme.commands").startswith("```bash\nmake demo")


def test_td3_per_seed_sentence_follows_the_data():
    data = _results("rl_td3_delay.json")
    returns = [v["final_return"] for k, v in data.items() if k != "provenance"]
    gaps = [max(col) - min(col) for col in zip(*returns, strict=True)]
    text = docs.render("rl.td3-seeds")
    assert f"within {max(gaps):.1f} of each other" in text
    assert "near -110 in all" not in text


def test_ssl_tables_call_a_mean_of_three_seeds_a_mean():
    for name in ("ssl.ablation", "ssl.compare", "readme.ssl", "ssl.blur"):
        text = docs.render(name)
        assert "IQM" not in text and "mean" in text
    row = _results("byol_ablation.json")["rows"][0]
    mean = 100 * sum(row["linear_probe_seeds"]) / 3
    assert f"| yes | 0.0 | {mean:.1f} (" in docs.render("ssl.ablation")


def test_consistency_online_over_ema_ratio():
    ict = _results("consistency_compare.json")["ict"]["mean_of_10_draws"]
    ratios = [o / e for o, e in zip(ict["ratio_1step_online"], ict["ratio_1step"], strict=True)]
    assert f"{min(ratios):.1f} to {max(ratios):.1f}x lower distance" in docs.render(
        "ct.compare-findings"
    )
    assert f"{min(ratios):.1f}" == "2.7"


def test_image_ratio_to_the_floor_at_two_steps():
    data = _results("consistency_digits.json")
    expected = data["frechet_2step"] / data["frechet_floor"]
    assert f"{expected:.1f}x the floor" in docs.render("ct.digits")
    assert f"{expected:.1f}" == "1.4"


def test_vae_paired_difference():
    data = _results("vae_synthetic_cpu2500.json")["per_seed"]
    diff = [a["nll"] - b["nll"] for b, a in zip(data["basic"], data["aggressive"], strict=True)]
    s = stats.summary(diff)
    text = docs.render("vae.paired-2500")
    assert f"IQM {s['value']:+.2f} nats" in text
    assert f"lower in {sum(d < 0 for d in diff)} of 8 seeds" in text


def test_index_lists_every_results_file_with_its_machine():
    text = docs.render("repro.index")
    for path in os.listdir(engine.RESULTS):
        if path.endswith(".json"):
            assert f"`{path}`" in text
    assert re.search(r"`consistency_mnist5k.json` \| 1x NVIDIA H100", text)
    assert "not recorded" not in text


def test_every_results_file_has_provenance():
    for path in os.listdir(engine.RESULTS):
        if path.endswith(".json"):
            data = _results(path)
            parts = data if isinstance(data, list) else [data]
            assert all("provenance" in p for p in parts), path


def test_python_blocks_of_the_library_page_run(tmp_path, monkeypatch):
    text = open(os.path.join(ROOT, "docs", "library.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 8
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/library.md python block {i}", "exec"), namespace)
