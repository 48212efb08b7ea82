"""The benchmarks' grids on tiny random models: every cell measured, written and compared.

These check the plumbing (cells, baselines, ratios, token lengths, result files), never
a wall-clock figure: timings of tiny models say nothing about the real ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch

from benchmarks import bench_generation, bench_training
from benchmarks._common import load_warning
from harness.backbones import OPTION_ROWS, load_llm

TINY = ["--llm", "tiny-causal", "--encoder", "tiny-encoder"]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread while these tests run: on a shared 2-core machine, two threads
    that wait for each other at every tiny op made a 10 ms step take 1.8 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, dict]:
    out = tmp_path_factory.mktemp("bench-training")
    res = bench_training.main([*TINY, "--task", "lamp3", "--micro-batches", "1,2", "--lengths", "16,32",
                               "--batch", "2", "--steps", "2", "--pplug-baseline", "2x32",
                               "--oppu-baseline", "1x16", "--out", str(out)])
    return res, (out / "bench_training.md").read_text(), json.loads((out / "bench_training.json").read_text())


def test_training_grid_measures_every_cell_of_both_methods(training):  # 2 micro-batches x 2 lengths
    res, _, written = training
    for payload in (res, written):
        cells = {(c["method"], c["micro_batch"], c["max_input_tokens"]) for c in payload["cells"]}
        assert cells == {(m, micro, n) for m in ("pplug", "oppu") for micro in (1, 2) for n in (16, 32)}
    for c in res["cells"]:
        assert len(c["step_seconds"]) == 2  # the timed steps; the warm-up is apart
        assert c["median_step_seconds"] == pytest.approx(sum(c["step_seconds"]) / 2)
        assert c["step_spread"] == pytest.approx(max(c["step_seconds"]) / min(c["step_seconds"]) - 1)
        assert c["passes_per_step"] == 2 // c["micro_batch"]
        assert c["examples_per_s"] == pytest.approx(2 / c["median_step_seconds"])
        assert c["peak_rss_mib"] > 0


def test_training_inputs_reach_the_stated_length(training):
    res, _, _ = training
    for c in res["cells"]:
        # The tiny models' tokenizer adds [CLS]/[SEP] inside the budget and has no chat wrapper.
        assert c["input_tokens_per_example"] == c["max_input_tokens"]
        assert c["tokens_per_example"] > c["input_tokens_per_example"]  # plus target (and PPlug's soft tokens)


def test_training_baseline_cell_has_ratio_one_and_the_others_are_relative_to_it(training):
    res, _, _ = training
    for method, (micro, length) in (("pplug", (2, 32)), ("oppu", (1, 16))):
        cells = [c for c in res["cells"] if c["method"] == method]
        (base,) = [c for c in cells if c["baseline"]]
        assert (base["micro_batch"], base["max_input_tokens"]) == (micro, length)
        assert base["ratio_vs_baseline"] == 1.0
        for c in cells:
            assert c["ratio_vs_baseline"] == pytest.approx(c["examples_per_s"] / base["examples_per_s"])


def test_training_markdown_has_the_ratio_column_the_command_and_a_computed_reading(training):
    res, md, _ = training
    assert "| vs baseline |" in md
    assert md.count("(baseline)") == 2
    assert "python -m benchmarks.bench_training --llm tiny-causal" in md
    assert "never changes the optimisation" in md
    pplug_part, oppu_part = md.split("## Reading", 1)[1].split("\noppu (")
    for method, part in (("pplug", pplug_part), ("oppu", oppu_part)):
        best = max((c for c in res["cells"] if c["method"] == method and c["max_input_tokens"] == 32),
                   key=lambda c: c["examples_per_s"])
        assert f"at 32 input tokens the fastest micro-batch is **{best['micro_batch']}**" in part


def test_training_rejects_a_baseline_outside_the_grid(tmp_path):
    with pytest.raises(SystemExit):
        bench_training.main([*TINY, "--micro-batches", "1,2", "--lengths", "16", "--batch", "2",
                             "--out", str(tmp_path)])  # default baselines 2x256 / 16x256 are not in it


def test_load_warning_is_loud_only_above_the_limit():
    assert load_warning([1.0, 2.4, None], 2.5) is None
    assert "NOT idle-machine figures" in load_warning([1.0, 3.1], 2.5)


@pytest.mark.parametrize("decoding,task", [("free", "lamp7"), ("constrained", "lamp3")])
def test_generation_batch_sweep_is_relative_to_batch_one(decoding, task):
    sweep = bench_generation.batch_sweep(load_llm("tiny-causal"), task, "synthetic", 4, [1, 2, 4], decoding, 4)
    rows = sweep["rows"]
    assert [r["batch_size"] for r in rows] == [1, 2, 4]
    assert rows[0]["ratio_vs_smallest"] == 1.0
    for r in rows:
        assert r["ratio_vs_smallest"] == pytest.approx(r["examples_per_s"] / rows[0]["examples_per_s"])
        assert 0.0 <= r["same_output_as_smallest"] <= 1.0
    n_labels = 5 if decoding == "constrained" else 0
    assert sweep["n_labels"] == n_labels
    assert [r["prompts_per_pass"] for r in rows] == [1, 2, 4]  # OPTION_ROWS // 5 labels > 4: never capped here
    assert bench_generation.prompts_per_pass("constrained", 64, 100, 5) == OPTION_ROWS // 5


def test_generation_sweep_does_not_retime_a_batch_size_that_runs_the_same_passes():
    rows = bench_generation.batch_sweep(load_llm("tiny-causal"), "lamp7", "synthetic", 2, [1, 2, 4], "free", 4)["rows"]
    assert [(r["batch_size"], r["prompts_per_pass"], r["timed_as"]) for r in rows] == [(1, 1, 1), (2, 2, 2), (4, 2, 2)]
    assert rows[2]["examples_per_s"] == rows[1]["examples_per_s"]
    md = "\n".join(bench_generation.sweep_markdown({"decoding": "free", "n": 2, "n_labels": 0, "rows": rows,
                                                    "prompts_from": "synthetic lamp7 dev"}))
    assert "| 4 | 2 (the passes of batch 2: its figures) |" in md


def test_generation_main_writes_the_sweep_beside_the_existing_tables(tmp_path):
    res = bench_generation.main(["--llm", "tiny-causal", "--n", "4", "--batch-size", "2", "--beams", "1",
                                 "--max-new-tokens", "4", "--pplug-steps", "0", "--batch-sizes", "1,2",
                                 "--out", str(tmp_path)])
    md = (tmp_path / "bench_generation.md").read_text()
    assert "| beams | batched ex/s |" in md  # the existing batched-vs-batch-1 table still there
    assert "Prediction batch size" in md and "vs batch 1" in md
    assert {s["decoding"] for s in res["batch_sweeps"]} == {"free", "constrained"}
    assert json.loads((tmp_path / "bench_generation.json").read_text())["batch_sweeps"]
