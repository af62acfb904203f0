"""The benchmark harness: how fast the reference networks train and evaluate, and against what.

  python -m benchmarks.run                          # everything (about 10 minutes on 2 cores,
                                                    # and 5-10 more for the diffusion section)
  python -m benchmarks.run --quick                  # every section, few steps (a few minutes)
  python -m benchmarks.run --only=steps,torch --networks=dcgan28
  python -m benchmarks.run --cores=1 --parallel=pmap   # one core; pmap instead of the default
  python -m benchmarks.run --only=diffusion --diffusion_networks=ddpm_mlp   # one network's
  python -m benchmarks.run --quick --output_dir=/tmp/bench   # anywhere but the committed files

Sections (`--only`, comma-separated; default all):
  steps         compile time, step time (median, IQR), samples/s, XLA's FLOPs per step and
                the fraction of a float32 matrix product's FLOP/s timed in the same rounds
  torch         the PyTorch twins of the networks (benchmarks/torch_reference.py, extra
                `.[bench]`), timed in the same rounds as the JAX steps; jax/torch ratios
  diffusion     the diffusion family (`--diffusion_networks`): train steps of the 2-D denoiser
                (batch 10,000 as the Aithal protocol, 512 as the benchmark) and the 32x32
                UNet (batch 64), and sampler samples/s (1,000 ancestral steps on 10,000
                points; DDIM over 50 steps on 64 images), each against its PyTorch twin
                (benchmarks/torch_diffusion.py) in the same rounds; fraction of peak
  loop          `training.train_and_evaluate` with logging and checkpointing on, against
                the bare step timed just before and after it
  input         `data.create_iterator` batches/s, and the host-to-device copy of a batch
  eval          SSIM over 10,000 28x28 images; precision/recall + density/coverage on
                10,000 x 10,000 features of width 64
  evaluate_cli  the whole `python -m experiments.evaluate` on a short default VAE run
  scaling       samples/s of the bare steps at 1, 2, 4 and 8 devices (on a CPU, forced host
                devices, one process per count)
  multi_seed    the shapes benchmark's conv AE trained for S = 1, 2, 4, 8 seeds at once
                (`training.multi_seed`): S vmapped in one call per step, and vmapped under
                `lax.scan`, against S single-seed steps called from Python, with
                `model.conv_impl` xla and matmul, timed in the same rounds; fraction of peak

Networks (`--networks`): mlp_vae, dcgan28, conv_ae (the `conv_ae_mnist` networks), each on
random data of its shape for steps and on `digits28` for the loop (MNIST needs a download).
Timings that are compared are taken in alternating rounds, so the load of a shared machine
falls on both sides; compare ratios, and numbers only within one results file.

Writes `<machine>-<date>.json` and `.md` into `--output_dir` (default `benchmarks/results/`,
the committed results: pass another folder for a run that is not meant to be committed);
`-quick` is added with --quick, and `-2`, `-3`... when the name is taken, so an earlier run's
files are never overwritten. The last line on stdout names the files written.

Every flag is checked before any work: a bad value is one line `error: ...` on stderr and
exit code 2. Each finished section says so in one line on stderr. Ctrl-C (or SIGTERM) stops the run: with sections finished, they are written as
`<machine>-<date>[-quick]-interrupted.json/.md` (marked as interrupted, naming the sections
not run), one line on stderr says where, and the exit code is 75; with none finished, one
line and exit code 130. Exit codes as in experiments/cli.py. Library logs (orbax, absl) are
kept to warnings unless --verbosity is given, as in `experiments.train`.
"""

from experiments import signals

if __name__ == "__main__":  # Before the imports: a Ctrl-C during them is not a traceback.
  signals.record()

# pylint: disable=wrong-import-position
import dataclasses
import difflib
import itertools
import json
import math
import os
import sys
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

from absl import app, flags

from experiments import cli

SECTIONS = (
  "steps",
  "torch",
  "loop",
  "input",
  "eval",
  "evaluate_cli",
  "scaling",
  "diffusion",
  "multi_seed",
)
NETWORKS = ("mlp_vae", "dcgan28", "conv_ae")
DIFFUSION_NETWORKS = ("ddpm_mlp", "ddpm_unet32")  # benchmarks/diffusion_workloads.py.
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
EXIT_INTERRUPTED_SAVED = 75  # The project's exit codes: experiments/cli.py.
EXIT_NOTHING_SAVED = 130


@dataclasses.dataclass
class Options:
  """What to run and how long. `Options()` is the full run, `Options.quick()` the short one."""

  sections: Tuple[str, ...] = SECTIONS
  networks: Tuple[str, ...] = NETWORKS
  rounds: int = 12  # Alternating rounds of step timing.
  round_seconds: float = 0.4  # Time per contender per round.
  matmul_size: int = 2048  # The peak: a float32 [n, n] @ [n, n].
  loop_steps: Dict[str, int] = dataclasses.field(
    default_factory=lambda: {"mlp_vae": 1000, "dcgan28": 200, "conv_ae": 300}
  )
  loop_windows: int = 10  # Logging windows per loop run (the first and last are left out).
  loop_saves: int = 4  # Checkpoints per loop run (asynchronous, as by default).
  input_batches: int = 200
  diffusion_networks: Tuple[str, ...] = DIFFUSION_NETWORKS
  # Per workload (`network/setting`, benchmarks/diffusion_workloads.py): the train batch;
  # samples per sampler call and its steps.
  diffusion_batches: Dict[str, int] = dataclasses.field(
    default_factory=lambda: {
      "ddpm_mlp/aithal": 10_000,  # The Aithal protocol's batch.
      "ddpm_mlp/benchmark": 512,  # The hallucination benchmark's 2-D diffusion base.
      "ddpm_unet32/shapes": 64,
    }
  )
  diffusion_samples: Dict[str, int] = dataclasses.field(
    default_factory=lambda: {"ddpm_mlp/aithal": 10_000, "ddpm_unet32/shapes": 64}
  )
  diffusion_sampling_steps: Dict[str, int] = dataclasses.field(
    default_factory=lambda: {"ddpm_mlp/aithal": 1_000, "ddpm_unet32/shapes": 50}
  )
  diffusion_sampling_rounds: int = 3  # Alternating rounds; one sampler call each per round.
  ssim_images: int = 10_000
  prdc_features: int = 10_000
  prdc_width: int = 64
  eval_repeats: int = 2
  evaluate_samples: int = 10_000
  classifier_steps: int = 150
  model_steps: int = 200
  scaling_devices: Tuple[int, ...] = (1, 2, 4, 8)
  multi_seed_networks: Tuple[str, ...] = ("shapes_ae",)  # workloads.MULTI_SEED_NETWORKS.
  multi_seed_counts: Tuple[int, ...] = (1, 2, 4, 8)  # S: seeds trained together.
  multi_seed_conv_impls: Tuple[str, ...] = ("xla", "matmul")
  multi_seed_steps: int = 4  # Steps per timed call (the chunk under lax.scan).
  multi_seed_rounds: int = 3  # Alternating rounds; one call of each contender per round.
  data_dir: Optional[str] = None  # tfds data_dir for digits28 (default: tfds's).
  parallel_mode: Optional[str] = None  # auto, pmap or shard_map (default: the configs', auto).

  @classmethod
  def quick(cls, **overrides) -> "Options":
    values = dict(
      rounds=2,
      round_seconds=0.05,
      matmul_size=1024,
      loop_steps={"mlp_vae": 12, "dcgan28": 12, "conv_ae": 12},
      loop_windows=4,
      input_batches=10,
      diffusion_batches={
        "ddpm_mlp/aithal": 10_000,
        "ddpm_mlp/benchmark": 512,
        "ddpm_unet32/shapes": 8,
      },
      diffusion_samples={"ddpm_mlp/aithal": 1_000, "ddpm_unet32/shapes": 8},
      diffusion_sampling_rounds=1,
      ssim_images=1000,
      prdc_features=1000,
      eval_repeats=1,
      evaluate_samples=500,
      classifier_steps=10,
      model_steps=10,
      scaling_devices=(1, 2),
      multi_seed_counts=(1, 2),
      multi_seed_steps=2,
      multi_seed_rounds=1,
    )
    values.update(overrides)
    return cls(**values)


def _torch_runner(name: str, batch_size: int, threads: int):
  import torch

  torch.set_num_threads(threads)
  from benchmarks import torch_reference

  return torch_reference.make_step(name, batch_size)


def _torch_available() -> bool:
  try:
    import torch  # noqa: F401

    return True
  except ImportError:
    return False


def _bare_step(options: Options, name: str, devices=None):
  from benchmarks import workloads

  return workloads.bare_step(name, devices, parallel_mode=options.parallel_mode)


def _shared_bare_step(options: Options, bare_steps: Dict, name: str):
  """The network's bare step on all devices, built (and compiled) once per run."""
  if name not in bare_steps:
    bare_steps[name] = _bare_step(options, name)
  return bare_steps[name]


def _step_entry(bare, seconds, peak_seconds, peak_flops) -> Dict[str, object]:
  from benchmarks import timing

  summary = timing.summarize(seconds)
  entry = {
    "batch_size": bare.batch_size,
    "num_devices": bare.num_devices,
    "first_call_seconds": bare.first_call_seconds,
    "step_seconds": summary,
    "samples_per_second": bare.batch_size / summary["median"],
    "flops_per_step": bare.flops_per_step,
  }
  if bare.flops_per_step is not None:
    peak = timing.summarize(peak_seconds)
    entry["flops_per_second"] = bare.flops_per_step / summary["median"]
    entry["peak_flops_per_second"] = peak_flops / peak["median"]
    entry["fraction_of_peak"] = entry["flops_per_second"] / entry["peak_flops_per_second"]
  return entry


def _steps_and_torch(options: Options, bare_steps: Dict) -> Dict[str, object]:
  """Bare JAX steps, the matmul peak and (if asked) PyTorch, in alternating rounds."""
  from benchmarks import timing, workloads

  results: Dict[str, object] = {}
  with_torch = "torch" in options.sections
  if with_torch and not _torch_available():
    results["torch"] = {"skipped": "PyTorch is not installed: pip install -e '.[bench]'"}
    with_torch = False
  peak_flops, peak_run = workloads.matmul_peak(options.matmul_size)
  all_peak_seconds = []
  results["steps"], torch_results = {}, {}
  for name in options.networks:
    bare = _shared_bare_step(options, bare_steps, name)
    runners = {"peak": peak_run, "jax": bare.run}
    if with_torch:
      runners["torch"] = _torch_runner(name, bare.batch_size, timing.usable_cores())
    counts = {k: timing.calls_per_round(fn, options.round_seconds) for k, fn in runners.items()}
    counts["peak"] = 1
    seconds = timing.interleaved(runners, counts, options.rounds)
    all_peak_seconds += seconds["peak"]
    results["steps"][name] = _step_entry(bare, seconds["jax"], seconds["peak"], peak_flops)
    if with_torch:
      summary = timing.summarize(seconds["torch"])
      torch_results[name] = {
        "batch_size": bare.batch_size,
        "step_seconds": summary,
        "samples_per_second": bare.batch_size / summary["median"],
      }
  peak = timing.summarize(all_peak_seconds)
  results["peak"] = {
    "matmul_size": options.matmul_size,
    "flops": peak_flops,
    "seconds": peak,
    "flops_per_second": peak_flops / peak["median"],
  }
  if with_torch:
    import torch

    results["torch"] = {
      "version": torch.__version__,
      "threads": torch.get_num_threads(),
      "networks": torch_results,
    }
  return results


def _diffusion(options: Options, bare_steps: Dict) -> Dict[str, object]:
  """The diffusion train steps and samplers, JAX and the PyTorch twin in alternating rounds
  beside the matmul peak (benchmarks/diffusion_workloads.py names the workloads)."""
  del bare_steps  # Networks of their own.
  from benchmarks import diffusion_workloads as dw
  from benchmarks import timing, workloads

  with_torch = _torch_available()
  if with_torch:
    import torch

    torch.set_num_threads(timing.usable_cores())
    twin = {"version": torch.__version__, "threads": torch.get_num_threads()}
  else:
    twin = {"skipped": "PyTorch is not installed: pip install -e '.[bench]'"}
  batches, samples = options.diffusion_batches, options.diffusion_samples
  peak_flops, peak_run = workloads.matmul_peak(options.matmul_size)
  train_steps, sampling, all_peak_seconds = {}, {}, []
  for workload in dw.selected(options.diffusion_networks, batches):
    bare = dw.train_step(workload, batches[workload], options.parallel_mode)
    runners = {"peak": peak_run, "jax": bare.run}
    if with_torch:
      runners["torch"] = dw.torch_train_step(workload, batches[workload])
    counts = {k: timing.calls_per_round(fn, options.round_seconds) for k, fn in runners.items()}
    counts["peak"] = 1
    seconds = timing.interleaved(runners, counts, options.rounds)
    all_peak_seconds += seconds["peak"]
    entry = _step_entry(bare, seconds["jax"], seconds["peak"], peak_flops)
    if with_torch:
      summary = timing.summarize(seconds["torch"])
      entry["torch_step_seconds"] = summary
      entry["torch_samples_per_second"] = bare.batch_size / summary["median"]
      entry["jax_over_torch"] = entry["samples_per_second"] / entry["torch_samples_per_second"]
    train_steps[workload] = entry
  for workload in dw.selected(options.diffusion_networks, samples):
    num, num_steps = samples[workload], options.diffusion_sampling_steps[workload]
    jax_sampler = dw.sampler(workload, num, num_steps)
    runners = {"peak": peak_run, "jax": jax_sampler.run}
    if with_torch:
      runners["torch"] = dw.torch_sampler(workload, num, num_steps)
      timing.time_calls(runners["torch"], 1)  # Warm-up, as the first JAX call was.
    seconds = timing.interleaved(
      runners, dict.fromkeys(runners, 1), options.diffusion_sampling_rounds
    )
    all_peak_seconds += seconds["peak"]
    summary = timing.summarize(seconds["jax"])
    entry = {
      "sampler": jax_sampler.sampler,
      "num_samples": num,
      "num_steps": num_steps,
      "first_call_seconds": jax_sampler.first_call_seconds,
      "seconds": summary,
      "samples_per_second": num / summary["median"],
      "flops_per_call": jax_sampler.flops_per_call,
    }
    if jax_sampler.flops_per_call is not None:
      peak_rate = peak_flops / timing.summarize(seconds["peak"])["median"]
      entry["flops_per_second"] = jax_sampler.flops_per_call / summary["median"]
      entry["fraction_of_peak"] = entry["flops_per_second"] / peak_rate
    if with_torch:
      torch_summary = timing.summarize(seconds["torch"])
      entry["torch_seconds"] = torch_summary
      entry["torch_samples_per_second"] = num / torch_summary["median"]
      entry["jax_over_torch"] = entry["samples_per_second"] / entry["torch_samples_per_second"]
    sampling[workload] = entry
  peak = {"matmul_size": options.matmul_size}
  if all_peak_seconds:
    peak["flops_per_second"] = peak_flops / timing.summarize(all_peak_seconds)["median"]
  return {
    "diffusion": {
      "torch": twin,
      "peak": peak,
      "train_steps": train_steps,
      "sampling": sampling,
    }
  }


def _loop(options: Options, bare_steps: Dict) -> Dict[str, object]:
  """The training loop against the bare step timed just before and just after it."""
  from benchmarks import timing, workloads

  loops = {}
  for name in options.networks:
    bare = _shared_bare_step(options, bare_steps, name)
    count = timing.calls_per_round(bare.run, options.round_seconds) * max(options.rounds // 4, 1)
    before = timing.time_calls(bare.run, count)
    num_steps = options.loop_steps[name]
    entry = workloads.training_loop(
      name,
      num_steps,
      max(num_steps // options.loop_windows, 1),
      max(num_steps // options.loop_saves, 1),
      options.data_dir,
      options.parallel_mode,
    )
    after = timing.time_calls(bare.run, count)
    step = timing.summarize(before + after)
    entry["bare_step_seconds"] = step
    entry["bare_samples_per_second"] = bare.batch_size / step["median"]
    entry["fraction_of_bare_step"] = entry["samples_per_second"] / entry["bare_samples_per_second"]
    loops[name] = entry
  return {"loop": loops}


def _input(options: Options, bare_steps: Dict) -> Dict[str, object]:
  import jax
  from benchmarks import timing, workloads

  inputs = {}
  for name in options.networks:
    batch_size = workloads.network_config(name).train.batch_size
    key = f"batch_{batch_size}"
    if key in inputs:
      continue
    entry = workloads.input_pipeline(
      batch_size, options.input_batches, jax.local_device_count(), options.data_dir
    )
    bare = _shared_bare_step(options, bare_steps, name)
    put = timing.summarize(timing.time_calls(bare.put_batch, options.input_batches))
    entry["put_batch_seconds"] = put
    inputs[key] = entry
  return {"input": inputs}


def _eval(options: Options, bare_steps: Dict) -> Dict[str, object]:
  del bare_steps
  from benchmarks import workloads

  return {
    "eval": {
      "ssim": workloads.ssim_throughput(options.ssim_images, options.eval_repeats),
      "prdc": workloads.prdc_throughput(
        options.prdc_features, options.prdc_width, options.eval_repeats
      ),
    }
  }


def _evaluate_cli(options: Options, bare_steps: Dict) -> Dict[str, object]:
  del bare_steps
  from benchmarks import workloads

  return {
    "evaluate_cli": workloads.evaluate_cli(
      options.evaluate_samples, options.classifier_steps, options.model_steps, options.data_dir
    )
  }


def _scaling(options: Options, bare_steps: Dict) -> Dict[str, object]:
  """Samples/s of the bare steps per device count: one process per count on a CPU."""
  del bare_steps  # Each count builds its own.
  import jax
  from benchmarks import timing, workloads

  per_count = {}
  if jax.default_backend() == "cpu":
    args = [
      "--only=steps",
      f"--networks={','.join(options.networks)}",
      f"--rounds={options.rounds}",
      f"--round_seconds={options.round_seconds}",
      f"--matmul_size={options.matmul_size}",
    ]
    if options.parallel_mode:
      args.append(f"--parallel={options.parallel_mode}")
    for count in options.scaling_devices:
      child = workloads.run_child(args, count)
      per_count[str(count)] = {name: child["steps"][name] for name in options.networks}
  else:
    devices = jax.local_devices()
    for count in (c for c in options.scaling_devices if c <= len(devices)):
      per_count[str(count)] = {}
      for name in options.networks:
        bare = _bare_step(options, name, devices[:count])
        calls = timing.calls_per_round(bare.run, options.round_seconds) * options.rounds
        summary = timing.summarize(timing.time_calls(bare.run, calls))
        per_count[str(count)][name] = {
          "num_devices": count,
          "step_seconds": summary,
          "samples_per_second": bare.batch_size / summary["median"],
        }
  return {
    "scaling": {
      "forced_host_devices": jax.default_backend() == "cpu",
      "samples_per_second": {
        name: {count: entry[name]["samples_per_second"] for count, entry in per_count.items()}
        for name in options.networks
      },
      "runs": per_count,
    }
  }


def _multi_seed(options: Options, bare_steps: Dict) -> Dict[str, object]:
  """Per-step seconds of S seeds together (vmapped; vmapped under scan) and one at a time.

  For each S, every mode and conv implementation is timed in the same rounds, beside the
  matmul peak. Ratios: each mode's time over S single-seed steps from Python with the same
  implementation (`over_python_per_seed`) and with "xla" (`over_xla_python_per_seed`, how
  the shapes benchmark trains today).
  """
  del bare_steps
  from benchmarks import timing, workloads

  peak_flops, peak_run = workloads.matmul_peak(options.matmul_size)
  networks = {}
  for network in options.multi_seed_networks:
    flops = {
      impl: workloads.multi_seed_flops_per_step(network, impl)
      for impl in options.multi_seed_conv_impls
    }
    by_count = {}
    for count in options.multi_seed_counts:
      runs = {
        (impl, mode): workloads.multi_seed_run(network, impl, count, mode, options.multi_seed_steps)
        for impl in options.multi_seed_conv_impls
        for mode in workloads.MULTI_SEED_MODES
      }
      runners = {f"{impl}/{mode}": r.run for (impl, mode), r in runs.items()}
      runners["peak"] = peak_run
      seconds = timing.interleaved(runners, dict.fromkeys(runners, 1), options.multi_seed_rounds)
      peak_rate = peak_flops / timing.summarize(seconds["peak"])["median"]
      entries = {}
      for (impl, mode), r in runs.items():
        per_step = [t / options.multi_seed_steps for t in seconds[f"{impl}/{mode}"]]
        summary = timing.summarize(per_step)
        entry = {
          "first_call_seconds": r.first_call_seconds,
          "step_seconds": summary,
          "seed_steps_per_second": count / summary["median"],
        }
        if flops[impl] is not None:
          entry["fraction_of_peak"] = count * flops[impl] / summary["median"] / peak_rate
        entries.setdefault(impl, {})[mode] = entry
      for modes in entries.values():
        for entry in modes.values():
          median = entry["step_seconds"]["median"]
          entry["over_python_per_seed"] = (
            median / modes["python_per_seed"]["step_seconds"]["median"]
          )
          if "xla" in entries:
            entry["over_xla_python_per_seed"] = (
              median / entries["xla"]["python_per_seed"]["step_seconds"]["median"]
            )
      by_count[str(count)] = {"peak_flops_per_second": peak_rate, "conv_impls": entries}
    networks[network] = {"flops_per_seed_step": flops, "seeds": by_count}
  return {
    "multi_seed": {
      "steps_per_call": options.multi_seed_steps,
      "modes": list(workloads.MULTI_SEED_MODES),
      "networks": networks,
    }
  }


def _ratios(results: Dict) -> Dict[str, Dict[str, float]]:
  ratios: Dict[str, Dict[str, float]] = {}
  steps = results.get("steps", {})
  torch_networks = results.get("torch", {}).get("networks", {})
  for name, entry in steps.items():
    if name in torch_networks:
      ratios.setdefault("jax_over_torch", {})[name] = (
        entry["samples_per_second"] / torch_networks[name]["samples_per_second"]
      )
    if "fraction_of_peak" in entry:
      ratios.setdefault("fraction_of_peak", {})[name] = entry["fraction_of_peak"]
  diffusion = results.get("diffusion", {})
  for part in ("train_steps", "sampling"):
    for workload, entry in diffusion.get(part, {}).items():
      for ratio in ("jax_over_torch", "fraction_of_peak"):
        if ratio in entry:
          ratios.setdefault(f"diffusion_{part}_{ratio}", {})[workload] = entry[ratio]
  for name, entry in results.get("loop", {}).items():
    ratios.setdefault("loop_over_bare_step", {})[name] = entry["fraction_of_bare_step"]
  for network, entry in results.get("multi_seed", {}).get("networks", {}).items():
    for count, per_count in entry["seeds"].items():
      for impl, modes in per_count["conv_impls"].items():
        for mode in ("vmap", "vmap_scan"):
          key = f"{network}/S={count}/{impl}/{mode}"
          ratios.setdefault("multi_seed_over_python_per_seed", {})[key] = modes[mode][
            "over_python_per_seed"
          ]
  return ratios


# The sections in the order they run, each with the function that measures it; "steps" and
# "torch" are timed together, in the same rounds.
_SECTION_RUNNERS: Tuple[Tuple[Tuple[str, ...], Callable[[Options, Dict], Dict]], ...] = (
  (("steps", "torch"), _steps_and_torch),
  (("diffusion",), _diffusion),
  (("loop",), _loop),
  (("input",), _input),
  (("eval",), _eval),
  (("evaluate_cli",), _evaluate_cli),
  (("scaling",), _scaling),
  (("multi_seed",), _multi_seed),
)


def run_benchmarks(
  options: Options,
  results: Optional[Dict] = None,
  on_section_done: Optional[Callable[[Tuple[str, ...], float], None]] = None,
) -> Dict[str, object]:
  """Runs the sections of `options`; returns the results (what the JSON file holds).

  `results` (default: a new dict) is filled one whole section at a time, and
  `results["sections_finished"]` lists those done, so a caller stopped by Ctrl-C still holds
  every finished section (and none half-done). `on_section_done(sections, seconds)` is called
  after each.
  """
  from benchmarks import timing

  unknown = (
    (set(options.sections) - set(SECTIONS))
    | (set(options.networks) - set(NETWORKS))
    | (set(options.diffusion_networks) - set(DIFFUSION_NETWORKS))
  )
  if unknown:
    raise ValueError(
      f"unknown sections or networks {sorted(unknown)}; sections: "
      f"{', '.join(SECTIONS)}; networks: {', '.join(NETWORKS)}; diffusion networks: "
      f"{', '.join(DIFFUSION_NETWORKS)}"
    )
  results = {} if results is None else results
  results.update(
    {
      "machine": timing.machine_stamp(),
      "options": dataclasses.asdict(options),
      "sections_finished": [],
    }
  )
  bare_steps: Dict = {}
  for names, runner in _SECTION_RUNNERS:
    asked = tuple(n for n in names if n in options.sections)
    if not asked:
      continue
    start = time.perf_counter()
    results.update(runner(options, bare_steps))
    results["sections_finished"] += asked
    if on_section_done is not None:
      on_section_done(asked, time.perf_counter() - start)
  finish_results(results)
  return results


def finish_results(results: Dict) -> None:
  """Adds the ratios of the sections in `results` and the load average at the end."""
  results["ratios"] = _ratios(results)
  # With the load at the start: a machine busy with other work shows here.
  results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]


def _results_stem(results: Dict, quick: bool) -> str:
  """`<machine>-<date>[-quick][-interrupted]`, the date of the run's start."""
  from benchmarks import timing

  date = str(results["machine"]["date"])[:10]
  return (
    f"{timing.machine_slug(results['machine'])}-{date}{'-quick' if quick else ''}"
    f"{'-interrupted' if 'interrupted' in results else ''}"
  )


def _write_new(path: str, text: str) -> bool:
  """Writes `text` to `path` unless it exists (atomically checked); returns whether it wrote."""
  try:
    with open(path, "x", encoding="utf-8") as f:
      f.write(text)
  except FileExistsError:
    return False
  return True


def write_results(results: Dict, output_dir: str, quick: bool) -> Tuple[str, str]:
  """Writes `<stem>.json` and `.md` into `output_dir` (stem: `_results_stem`); returns the paths.

  Never overwrites: when either name is taken (a second run on the same day), `-2`, `-3`...
  is added to the stem.
  """
  from benchmarks import report

  os.makedirs(output_dir, exist_ok=True)
  stem = _results_stem(results, quick)
  texts = (json.dumps(results, indent=2), report.to_markdown(results))
  for number in itertools.count(1):
    candidate = os.path.join(output_dir, stem if number == 1 else f"{stem}-{number}")
    json_path, markdown_path = candidate + ".json", candidate + ".md"
    if os.path.exists(markdown_path) or not _write_new(json_path, texts[0]):
      continue
    if _write_new(markdown_path, texts[1]):
      return json_path, markdown_path
    os.remove(json_path)  # Another run took the .md name in between: try the next stem.
  raise AssertionError("unreachable")


def mark_interrupted(results: Dict, options: Options, signal_name: str) -> None:
  """Marks `results` (holding the sections finished so far) as a run stopped by a signal."""
  finished = results.get("sections_finished", [])
  results["interrupted"] = {
    "signal": signal_name,
    "sections_not_run": [s for s in options.sections if s not in finished],
  }


_ONLY = flags.DEFINE_list("only", list(SECTIONS), f"Sections to run: {', '.join(SECTIONS)}.")
_NETWORKS = flags.DEFINE_list("networks", list(NETWORKS), f"Networks: {', '.join(NETWORKS)}.")
_DIFFUSION_NETWORKS = flags.DEFINE_list(
  "diffusion_networks",
  list(DIFFUSION_NETWORKS),
  f"Networks of the diffusion section: {', '.join(DIFFUSION_NETWORKS)}.",
)
_QUICK = flags.DEFINE_bool("quick", False, "Few steps and small evaluation sets.")
_ROUNDS = flags.DEFINE_integer("rounds", None, "Alternating timing rounds (default 12; 2 quick).")
_ROUND_SECONDS = flags.DEFINE_float("round_seconds", None, "Seconds per contender per round.")
_MATMUL_SIZE = flags.DEFINE_integer("matmul_size", None, "Side of the peak matrix product.")
_DATA_DIR = flags.DEFINE_string(
  "data_dir", None, "tfds data_dir, an existing folder (default: tfds's)."
)
_OUTPUT_DIR = flags.DEFINE_string(
  "output_dir",
  RESULTS_DIR,
  "Where the results files go (created if missing). The default "
  "is the repository's committed benchmarks/results/; pass another folder for a run that "
  "is not meant to be committed.",
)
_PARALLEL = flags.DEFINE_enum(
  "parallel",
  None,
  ["auto", "pmap", "shard_map"],
  "Data-parallel mode of steps and loop (default: the configs', auto, which is shard_map).",
)
_CORES = flags.DEFINE_integer(
  "cores",
  None,
  "Run on the first N CPU cores only (process affinity, set before jax "
  "starts; PyTorch gets as many threads). Default: all the process may use.",
)
_CHILD_OUTPUT = flags.DEFINE_string(
  "child_output", None, "Internal (scaling): write the JSON here and nothing else."
)


def _unknown_names(
  flag: str, given: Sequence[str], valid: Sequence[str], what: str
) -> Optional[str]:
  """The one-line complaint about `--flag` values not in `valid`, or None if all are valid."""
  if not given:
    return f"--{flag} names no {what}; pass some of: {', '.join(valid)}."
  unknown = [name for name in given if name not in valid]
  if not unknown:
    return None
  close = difflib.get_close_matches(unknown[0], valid, n=1)
  hint = f" (did you mean {close[0]!r}?)" if close else ""
  return (
    f"--{flag}: unknown {what} {', '.join(map(repr, unknown))}{hint}; valid: {', '.join(valid)}."
  )


def flag_problem() -> Optional[str]:
  """What is wrong with the parsed flags, in one line, or None. Reads no more than the flags,
  the usable cores and the file system, so it runs before jax starts."""
  from benchmarks import timing

  for problem in (
    _unknown_names("only", _ONLY.value, SECTIONS, "section"),
    _unknown_names("networks", _NETWORKS.value, NETWORKS, "network"),
    _unknown_names(
      "diffusion_networks", _DIFFUSION_NETWORKS.value, DIFFUSION_NETWORKS, "diffusion network"
    ),
  ):
    if problem:
      return problem
  for flag, low in ((_ROUNDS, 1), (_MATMUL_SIZE, 1)):
    if flag.value is not None and flag.value < low:
      return f"--{flag.name}={flag.value}: must be an integer >= {low}."
  if _ROUND_SECONDS.value is not None and not (
    math.isfinite(_ROUND_SECONDS.value) and _ROUND_SECONDS.value > 0
  ):
    return f"--round_seconds={_ROUND_SECONDS.value}: must be a number of seconds above 0."
  if _CORES.value is not None:
    if not hasattr(os, "sched_setaffinity"):
      return "--cores needs process affinity (Linux); leave it out on this system."
    usable = timing.usable_cores()
    if not 1 <= _CORES.value <= usable:
      return (
        f"--cores={_CORES.value}: this process may use {usable} CPU cores; pass a "
        f"number from 1 to {usable}."
      )
  data_dir = None if _DATA_DIR.value is None else os.path.expanduser(_DATA_DIR.value)
  problem = cli.folder_flag_problem(
    "data_dir",
    data_dir,
    "an existing tfds data_dir, or leave the flag out for tfds's default",
    must_exist=True,
  )
  if problem:
    return problem
  if not _CHILD_OUTPUT.value:
    return _output_dir_problem(_OUTPUT_DIR.value)
  return None


def _output_dir_problem(output_dir: str) -> Optional[str]:
  """Creates `output_dir` now, so that an unwritable one is said before the run, not after."""
  problem = cli.folder_flag_problem(
    "output_dir", output_dir, "the folder the results files should go to", must_exist=False
  )
  if problem:
    return problem
  try:
    os.makedirs(output_dir, exist_ok=True)
  except OSError as e:
    return f"--output_dir {output_dir} cannot be created ({e.strerror}); pass a writable folder."
  if not os.access(output_dir, os.W_OK):
    return f"--output_dir {output_dir} is not writable; pass a writable folder."
  return None


def _report_section(sections: Tuple[str, ...], seconds: float) -> None:
  """One progress line per finished section; also stops a run whose Ctrl-C jax swallowed."""
  print(f"benchmarks: {', '.join(sections)} done in {seconds:.1f} s", file=sys.stderr, flush=True)
  if signals.pending():
    raise KeyboardInterrupt


def _is_interruption(error: BaseException) -> bool:
  """Ctrl-C/SIGTERM: our KeyboardInterrupt, or the training loop's own (it saved and raised)."""
  if isinstance(error, KeyboardInterrupt):
    return True
  interrupts = sys.modules.get("aigc_jax.training.interrupts")  # Loaded if it was raised.
  return interrupts is not None and isinstance(error, interrupts.TrainingInterrupted)


def _save_interrupted(results: Dict, options: Options, quick: bool, signal_name: str) -> int:
  """Writes the finished sections of an interrupted run; returns the exit code."""
  signals.ignore()  # A second Ctrl-C must not stop the saving.
  finished = results.get("sections_finished", [])
  if not finished or _CHILD_OUTPUT.value:
    print(
      f"Interrupted by {signal_name} before any section finished; nothing was saved.",
      file=sys.stderr,
    )
    return EXIT_NOTHING_SAVED
  mark_interrupted(results, options, signal_name)
  finish_results(results)
  json_path, markdown_path = write_results(results, _OUTPUT_DIR.value, quick)
  rest = results["interrupted"]["sections_not_run"]
  print(
    f"Interrupted by {signal_name}: saved the finished sections ({', '.join(finished)}) "
    f"to {json_path} and {markdown_path}"
    + (f"; run the rest with --only={','.join(rest)}." if rest else "."),
    file=sys.stderr,
  )
  return EXIT_INTERRUPTED_SAVED


def main(argv: Sequence[str]) -> None:
  cli.no_positional_arguments(argv)
  problem = flag_problem()
  if problem:
    cli.fail(problem)
  if _CORES.value:  # Before jax starts: XLA sizes its thread pool by the usable cores.
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: _CORES.value])
  overrides = {
    "sections": tuple(_ONLY.value),
    "networks": tuple(_NETWORKS.value),
    "diffusion_networks": tuple(_DIFFUSION_NETWORKS.value),
    "data_dir": _DATA_DIR.value,
    "parallel_mode": _PARALLEL.value,
  }
  for name, flag in [
    ("rounds", _ROUNDS),
    ("round_seconds", _ROUND_SECONDS),
    ("matmul_size", _MATMUL_SIZE),
  ]:
    if flag.value is not None:
      overrides[name] = flag.value
  options = Options.quick(**overrides) if _QUICK.value else Options(**overrides)
  results: Dict[str, object] = {}
  try:
    if signals.pending():  # A Ctrl-C during start-up, deferred or swallowed.
      raise KeyboardInterrupt
    run_benchmarks(
      options, results, on_section_done=None if _CHILD_OUTPUT.value else _report_section
    )
  except BaseException as e:  # pylint: disable=broad-except  (re-raised unless an interrupt)
    if not _is_interruption(e):
      raise
    signal_name = signals.pending() or getattr(e, "signal_name", None) or "SIGINT"
    signals.exit_now(_save_interrupted(results, options, _QUICK.value, signal_name))
  signals.ignore()  # The run is done: a Ctrl-C now must not stop its results being written.
  if _CHILD_OUTPUT.value:
    with open(_CHILD_OUTPUT.value, "w", encoding="utf-8") as f:
      json.dump(results, f)
    return
  from benchmarks import report

  json_path, markdown_path = write_results(results, _OUTPUT_DIR.value, _QUICK.value)
  print(report.to_markdown(results))
  print(f"Wrote {json_path} and {markdown_path}")


def _run() -> None:
  try:
    signals.start_raising()
    app.run(main, flags_parser=cli.parse_flags)
  except KeyboardInterrupt:  # During flag parsing, before main could save anything.
    print(
      f"Interrupted by {signals.pending() or 'SIGINT'} before any section finished; "
      "nothing was saved.",
      file=sys.stderr,
    )
    signals.exit_now(EXIT_NOTHING_SAVED)


if __name__ == "__main__":
  _run()
