"""The harness's diffusion section, run on tiny sizes: its JSON's structure and internal
consistency (never its speed). The 2-D denoiser only: the shapes UNet's compile alone takes
most of a minute here (its twin is checked in test_torch_diffusion.py)."""

import pytest

from benchmarks import report, run

WIDTH = 128  # The Aithal denoiser's (experiments/configs/aithal_toy.py).
# Multiply-adds of one example through the shared temporal layer's three uses (fc1, fc2).
LAYER_FLOPS = 3 * 2 * 2 * WIDTH * WIDTH
BATCHES = {"ddpm_mlp/aithal": 64, "ddpm_mlp/benchmark": 32}


@pytest.fixture(scope="module")
def results():
  options = run.Options.quick(
    sections=("diffusion",),
    diffusion_networks=("ddpm_mlp",),
    rounds=2,
    round_seconds=0.01,
    matmul_size=256,
    diffusion_batches=BATCHES,
    diffusion_samples={"ddpm_mlp/aithal": 16},
    diffusion_sampling_steps={"ddpm_mlp/aithal": 20},
    diffusion_sampling_rounds=2,
  )
  return run.run_benchmarks(options)


def test_train_steps(results):
  steps = results["diffusion"]["train_steps"]
  assert set(steps) == set(BATCHES)  # ddpm_unet32 not asked for: not run.
  for workload, step in steps.items():
    batch = BATCHES[workload]
    assert step["batch_size"] == batch and step["num_devices"] == 8  # tests/conftest.py
    assert step["step_seconds"]["n"] % 2 == 0  # The same count in each of the two rounds.
    assert step["samples_per_second"] == pytest.approx(batch / step["step_seconds"]["median"])
    # XLA's count: at least the shared layer's products, forward and both gradients, and
    # less than four times a forward pass with the time path computed per example.
    forward = LAYER_FLOPS + 4 * 2 * WIDTH * WIDTH + 2 * 2 * 2 * WIDTH
    assert 3 * batch * LAYER_FLOPS <= step["flops_per_step"] < 4 * batch * forward + 2e6
    assert step["fraction_of_peak"] == pytest.approx(
      step["flops_per_step"] / step["step_seconds"]["median"] / step["peak_flops_per_second"]
    )


def test_sampler(results):
  entry = results["diffusion"]["sampling"]["ddpm_mlp/aithal"]
  assert (entry["sampler"], entry["num_samples"], entry["num_steps"]) == ("ddpm", 16, 20)
  assert entry["seconds"]["n"] == 2
  assert entry["samples_per_second"] == pytest.approx(16 / entry["seconds"]["median"])
  # 20 denoiser passes on 16 points, one timestep each: the time path once per pass.
  per_pass = entry["flops_per_call"] / 20
  assert (
    16 * LAYER_FLOPS <= per_pass < 16 * (LAYER_FLOPS + 4 * 2 * 2 * WIDTH) + 4 * 2 * WIDTH**2 * 2
  )
  assert "ddpm_unet32/shapes" not in results["diffusion"]["sampling"]


def test_torch_ratios_or_skip_reason(results):
  diffusion = results["diffusion"]
  ratios = results["ratios"]
  if "skipped" in diffusion["torch"]:
    assert ".[bench]" in diffusion["torch"]["skipped"]
    assert "diffusion_train_steps_jax_over_torch" not in ratios
    return
  for part, seconds in (("train_steps", "torch_step_seconds"), ("sampling", "torch_seconds")):
    for workload, entry in diffusion[part].items():
      size = entry.get("batch_size", entry.get("num_samples"))
      assert entry["torch_samples_per_second"] == pytest.approx(size / entry[seconds]["median"])
      assert ratios[f"diffusion_{part}_jax_over_torch"][workload] == pytest.approx(
        entry["samples_per_second"] / entry["torch_samples_per_second"]
      )


def test_markdown(results):
  table = report.to_markdown(results)
  assert "## Diffusion: denoiser train steps and samplers" in table
  assert "| ddpm_mlp/aithal | 64 |" in table and "| ddpm_mlp/benchmark | 32 |" in table
  assert "| ddpm_mlp/aithal | ddpm, 20 steps | 16 |" in table


def test_unknown_diffusion_network_is_one_line():
  with pytest.raises(ValueError, match="unknown sections or networks \\['ddpm_mpl'\\]"):
    run.run_benchmarks(run.Options(sections=("diffusion",), diffusion_networks=("ddpm_mpl",)))
