"""The benchmark harness, run for a handful of steps: its JSON's structure and internal
consistency (never its speed)."""

import json

import pytest

from benchmarks import run, timing

NETWORK = "mlp_vae"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  options = run.Options.quick(
    sections=("steps", "torch", "loop", "input", "eval", "scaling"),
    networks=(NETWORK,),
    rounds=2,
    round_seconds=0.01,
    matmul_size=256,
    loop_steps={NETWORK: 6},
    loop_windows=3,
    loop_saves=2,
    input_batches=3,
    ssim_images=40,
    prdc_features=40,
    prdc_width=8,
    scaling_devices=(2,),
    data_dir=str(tmp_path_factory.mktemp("tfds")),
  )
  return run.run_benchmarks(options)


def _check_summary(summary, n=None):
  assert summary["q25"] <= summary["median"] <= summary["q75"]
  assert summary["min"] <= summary["q25"]
  assert summary["iqr"] == pytest.approx(summary["q75"] - summary["q25"])
  assert summary["min"] > 0
  if n is not None:
    assert summary["n"] == n


def test_machine_stamp(results):
  machine = results["machine"]
  assert machine["backend"] == "cpu" and machine["num_devices"] == 8  # tests/conftest.py
  assert machine["cores"] >= 1 and machine["jax"] and machine["cpu_model"]
  assert len(machine["load_average_at_start"]) == 3 == len(machine["load_average_at_end"])
  assert timing.machine_slug(machine).startswith("cpu-")


def test_step_numbers_are_consistent(results):
  step = results["steps"][NETWORK]
  assert step["batch_size"] == 128 and step["num_devices"] == 8
  _check_summary(step["step_seconds"])
  assert step["step_seconds"]["n"] % 2 == 0  # The same count in each of the two rounds.
  assert step["samples_per_second"] == pytest.approx(128 / step["step_seconds"]["median"])
  # XLA's count of the step's FLOPs: at least the three matrix products per dense layer of
  # 784-400-40 / 20-400-784 (forward, and two backward but the input's) for 128 examples.
  dense = 784 * 400 + 400 * 40 + 20 * 400 + 400 * 784
  assert 2 * 128 * (3 * dense - 784 * 400) <= step["flops_per_step"] < 2 * 128 * 4 * dense
  assert step["flops_per_second"] == pytest.approx(
    step["flops_per_step"] / step["step_seconds"]["median"]
  )
  assert step["fraction_of_peak"] == pytest.approx(
    step["flops_per_second"] / step["peak_flops_per_second"]
  )
  assert step["first_call_seconds"] > 0
  peak = results["peak"]
  assert peak["flops"] == 2 * 256**3
  assert peak["flops_per_second"] == pytest.approx(peak["flops"] / peak["seconds"]["median"])
  assert peak["seconds"]["n"] == 2  # One product per round.


def test_torch_ratio_or_skip_reason(results):
  if "skipped" in results["torch"]:
    assert ".[bench]" in results["torch"]["skipped"]
    assert "jax_over_torch" not in results["ratios"]
    return
  torch_step = results["torch"]["networks"][NETWORK]
  _check_summary(torch_step["step_seconds"])
  assert torch_step["samples_per_second"] == pytest.approx(
    128 / torch_step["step_seconds"]["median"]
  )
  assert results["torch"]["threads"] == timing.usable_cores()
  assert results["ratios"]["jax_over_torch"][NETWORK] == pytest.approx(
    results["steps"][NETWORK]["samples_per_second"] / torch_step["samples_per_second"]
  )


def test_loop_against_bare_step(results):
  loop = results["loop"][NETWORK]
  assert loop["num_steps"] == 6 and loop["log_every"] == 2
  assert len(loop["window_seconds"]) == 3 and loop["timed_steps"] == 2  # The middle window.
  assert loop["samples_per_second"] == pytest.approx(128 * 2 / loop["window_seconds"][1])
  assert loop["wall_seconds"] > sum(loop["window_seconds"][1:])
  _check_summary(loop["bare_step_seconds"])
  assert loop["bare_samples_per_second"] == pytest.approx(128 / loop["bare_step_seconds"]["median"])
  assert loop["fraction_of_bare_step"] == pytest.approx(
    loop["samples_per_second"] / loop["bare_samples_per_second"]
  )
  assert results["ratios"]["loop_over_bare_step"][NETWORK] == loop["fraction_of_bare_step"]


def test_input_and_evaluation_entries(results):
  entry = results["input"]["batch_128"]
  _check_summary(entry["seconds_per_batch"], n=3)
  assert entry["batches_per_second"] == pytest.approx(1 / entry["seconds_per_batch"]["median"])
  _check_summary(entry["put_batch_seconds"], n=3)
  ssim, prdc = results["eval"]["ssim"], results["eval"]["prdc"]
  assert ssim["num_images"] == 40 and ssim["first_call_seconds"] > 0
  _check_summary(ssim["seconds"], n=1)
  assert (prdc["num_real"], prdc["num_fake"], prdc["width"]) == (40, 40, 8)


def test_scaling_runs_a_process_with_the_asked_device_count(results):
  scaling = results["scaling"]
  assert scaling["forced_host_devices"]
  child = scaling["runs"]["2"][NETWORK]
  assert child["num_devices"] == 2  # Not the parent's 8: the child had its own XLA_FLAGS.
  assert scaling["samples_per_second"][NETWORK]["2"] == child["samples_per_second"]
  assert child["samples_per_second"] == pytest.approx(128 / child["step_seconds"]["median"])


def test_files_and_markdown(results, tmp_path):
  json_path, markdown_path = run.write_results(results, str(tmp_path), quick=True)
  assert json_path.endswith("-quick.json") and markdown_path.endswith("-quick.md")
  with open(json_path) as f:
    assert json.load(f)["steps"][NETWORK]["batch_size"] == 128
  with open(markdown_path) as f:
    table = f.read()
  for heading in (
    "## Train step",
    "## Training loop",
    "## Input pipeline",
    "## Evaluation",
    "## Samples/s by device count",
  ):
    assert heading in table
  assert f"| {NETWORK} | 128 | 8 |" in table


def test_unknown_section_is_one_line():
  with pytest.raises(ValueError, match="unknown sections or networks \\['stpes'\\]"):
    run.run_benchmarks(run.Options(sections=("stpes",)))
