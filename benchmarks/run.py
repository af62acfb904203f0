"""The benchmark harness: how fast the reference networks train and evaluate, and against what.

  python -m benchmarks.run                          # everything (about 10 minutes on 2 cores)
  python -m benchmarks.run --quick                  # every section, few steps (about 1 minute)
  python -m benchmarks.run --only=steps,torch --networks=dcgan28
  python -m benchmarks.run --cores=1 --parallel=pmap   # one core; pmap instead of the default

Sections (`--only`, comma-separated; default all):
  steps         compile time, step time (median, IQR), samples/s, XLA's FLOPs per step and
                the fraction of a float32 matrix product's FLOP/s timed in the same rounds
  torch         the PyTorch twins of the networks (benchmarks/torch_reference.py, extra
                `.[bench]`), timed in the same rounds as the JAX steps; jax/torch ratios
  loop          `training.train_and_evaluate` with logging and checkpointing on, against
                the bare step timed just before and after it
  input         `data.create_iterator` batches/s, and the host-to-device copy of a batch
  eval          SSIM over 10,000 28x28 images; precision/recall + density/coverage on
                10,000 x 10,000 features of width 64
  evaluate_cli  the whole `python -m experiments.evaluate` on a short default VAE run
  scaling       samples/s of the bare steps at 1, 2, 4 and 8 devices (on a CPU, forced host
                devices, one process per count)

Networks (`--networks`): mlp_vae, dcgan28, conv_ae (the `conv_ae_mnist` networks), each on
random data of its shape for steps and on `digits28` for the loop (MNIST needs a download).
Timings that are compared are taken in alternating rounds, so the load of a shared machine
falls on both sides; compare ratios, and numbers only within one results file.

Writes `benchmarks/results/<machine>-<date>.json` and `.md` (`-quick` added with --quick).
"""
import dataclasses
import datetime
import json
import os
from typing import Dict, Optional, Sequence, Tuple

from absl import app, flags

SECTIONS = ("steps", "torch", "loop", "input", "eval", "evaluate_cli", "scaling")
NETWORKS = ("mlp_vae", "dcgan28", "conv_ae")
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


@dataclasses.dataclass
class Options:
  """What to run and how long. `Options()` is the full run, `Options.quick()` the short one."""
  sections: Tuple[str, ...] = SECTIONS
  networks: Tuple[str, ...] = NETWORKS
  rounds: int = 12  # Alternating rounds of step timing.
  round_seconds: float = 0.4  # Time per contender per round.
  matmul_size: int = 2048  # The peak: a float32 [n, n] @ [n, n].
  loop_steps: Dict[str, int] = dataclasses.field(
      default_factory=lambda: {"mlp_vae": 1000, "dcgan28": 200, "conv_ae": 300})
  loop_windows: int = 10  # Logging windows per loop run (the first and last are left out).
  loop_saves: int = 4  # Checkpoints per loop run (asynchronous, as by default).
  input_batches: int = 200
  ssim_images: int = 10_000
  prdc_features: int = 10_000
  prdc_width: int = 64
  eval_repeats: int = 2
  evaluate_samples: int = 10_000
  classifier_steps: int = 150
  model_steps: int = 200
  scaling_devices: Tuple[int, ...] = (1, 2, 4, 8)
  data_dir: Optional[str] = None  # tfds data_dir for digits28 (default: tfds's).
  parallel_mode: Optional[str] = None  # auto, pmap or shard_map (default: the configs', auto).

  @classmethod
  def quick(cls, **overrides) -> "Options":
    values = dict(rounds=2, round_seconds=0.05, matmul_size=1024,
                  loop_steps={"mlp_vae": 12, "dcgan28": 12, "conv_ae": 12}, loop_windows=4,
                  input_batches=10, ssim_images=1000, prdc_features=1000, eval_repeats=1,
                  evaluate_samples=500, classifier_steps=10, model_steps=10,
                  scaling_devices=(1, 2))
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
  entry = {"batch_size": bare.batch_size, "num_devices": bare.num_devices,
           "first_call_seconds": bare.first_call_seconds, "step_seconds": summary,
           "samples_per_second": bare.batch_size / summary["median"],
           "flops_per_step": bare.flops_per_step}
  if bare.flops_per_step is not None:
    peak = timing.summarize(peak_seconds)
    entry["flops_per_second"] = bare.flops_per_step / summary["median"]
    entry["peak_flops_per_second"] = peak_flops / peak["median"]
    entry["fraction_of_peak"] = entry["flops_per_second"] / entry["peak_flops_per_second"]
  return entry


def _steps_and_torch(options: Options, results: Dict, bare_steps: Dict) -> None:
  """Bare JAX steps, the matmul peak and (if asked) PyTorch, in alternating rounds."""
  from benchmarks import timing, workloads
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
      torch_results[name] = {"batch_size": bare.batch_size, "step_seconds": summary,
                             "samples_per_second": bare.batch_size / summary["median"]}
  peak = timing.summarize(all_peak_seconds)
  results["peak"] = {"matmul_size": options.matmul_size, "flops": peak_flops,
                     "seconds": peak, "flops_per_second": peak_flops / peak["median"]}
  if with_torch:
    import torch
    results["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads(),
                        "networks": torch_results}


def _loop(options: Options, results: Dict, bare_steps: Dict) -> None:
  """The training loop against the bare step timed just before and just after it."""
  from benchmarks import timing, workloads
  results["loop"] = {}
  for name in options.networks:
    bare = _shared_bare_step(options, bare_steps, name)
    count = timing.calls_per_round(bare.run, options.round_seconds) * max(options.rounds // 4, 1)
    before = timing.time_calls(bare.run, count)
    num_steps = options.loop_steps[name]
    entry = workloads.training_loop(name, num_steps, max(num_steps // options.loop_windows, 1),
                                    max(num_steps // options.loop_saves, 1), options.data_dir,
                                    options.parallel_mode)
    after = timing.time_calls(bare.run, count)
    step = timing.summarize(before + after)
    entry["bare_step_seconds"] = step
    entry["bare_samples_per_second"] = bare.batch_size / step["median"]
    entry["fraction_of_bare_step"] = (entry["samples_per_second"]
                                      / entry["bare_samples_per_second"])
    results["loop"][name] = entry


def _input(options: Options, results: Dict, bare_steps: Dict) -> None:
  import jax
  from benchmarks import timing, workloads
  results["input"] = {}
  for name in options.networks:
    batch_size = workloads.network_config(name).train.batch_size
    key = f"batch_{batch_size}"
    if key in results["input"]:
      continue
    entry = workloads.input_pipeline(batch_size, options.input_batches,
                                     jax.local_device_count(), options.data_dir)
    bare = _shared_bare_step(options, bare_steps, name)
    put = timing.summarize(timing.time_calls(bare.put_batch, options.input_batches))
    entry["put_batch_seconds"] = put
    results["input"][key] = entry


def _eval(options: Options, results: Dict) -> None:
  from benchmarks import workloads
  results["eval"] = {
      "ssim": workloads.ssim_throughput(options.ssim_images, options.eval_repeats),
      "prdc": workloads.prdc_throughput(options.prdc_features, options.prdc_width,
                                        options.eval_repeats)}


def _scaling(options: Options, results: Dict) -> None:
  """Samples/s of the bare steps per device count: one process per count on a CPU."""
  import jax
  from benchmarks import timing, workloads
  per_count = {}
  if jax.default_backend() == "cpu":
    args = ["--only=steps", f"--networks={','.join(options.networks)}",
            f"--rounds={options.rounds}", f"--round_seconds={options.round_seconds}",
            f"--matmul_size={options.matmul_size}"]
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
        per_count[str(count)][name] = {"num_devices": count, "step_seconds": summary,
                                       "samples_per_second": bare.batch_size / summary["median"]}
  results["scaling"] = {
      "forced_host_devices": jax.default_backend() == "cpu",
      "samples_per_second": {name: {count: entry[name]["samples_per_second"]
                                    for count, entry in per_count.items()}
                             for name in options.networks},
      "runs": per_count}


def _ratios(results: Dict) -> Dict[str, Dict[str, float]]:
  ratios: Dict[str, Dict[str, float]] = {}
  steps = results.get("steps", {})
  torch_networks = results.get("torch", {}).get("networks", {})
  for name, entry in steps.items():
    if name in torch_networks:
      ratios.setdefault("jax_over_torch", {})[name] = (
          entry["samples_per_second"] / torch_networks[name]["samples_per_second"])
    if "fraction_of_peak" in entry:
      ratios.setdefault("fraction_of_peak", {})[name] = entry["fraction_of_peak"]
  for name, entry in results.get("loop", {}).items():
    ratios.setdefault("loop_over_bare_step", {})[name] = entry["fraction_of_bare_step"]
  return ratios


def run_benchmarks(options: Options) -> Dict[str, object]:
  """Runs the sections of `options`; returns the results (what the JSON file holds)."""
  from benchmarks import timing
  unknown = (set(options.sections) - set(SECTIONS)) | (set(options.networks) - set(NETWORKS))
  if unknown:
    raise ValueError(f"unknown sections or networks {sorted(unknown)}; sections: "
                     f"{', '.join(SECTIONS)}; networks: {', '.join(NETWORKS)}")
  results: Dict[str, object] = {"machine": timing.machine_stamp(),
                                "options": dataclasses.asdict(options)}
  bare_steps: Dict = {}
  if "steps" in options.sections or "torch" in options.sections:
    _steps_and_torch(options, results, bare_steps)
  if "loop" in options.sections:
    _loop(options, results, bare_steps)
  if "input" in options.sections:
    _input(options, results, bare_steps)
  if "eval" in options.sections:
    _eval(options, results)
  if "evaluate_cli" in options.sections:
    from benchmarks import workloads
    results["evaluate_cli"] = workloads.evaluate_cli(
        options.evaluate_samples, options.classifier_steps, options.model_steps,
        options.data_dir)
  if "scaling" in options.sections:
    _scaling(options, results)
  results["ratios"] = _ratios(results)
  # With the load at the start: a machine busy with other work shows here.
  results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
  return results


def write_results(results: Dict, output_dir: str, quick: bool) -> Tuple[str, str]:
  """Writes `<machine>-<date>[-quick].json` and `.md` into `output_dir`; returns the paths."""
  from benchmarks import report, timing
  os.makedirs(output_dir, exist_ok=True)
  date = datetime.date.today().isoformat()
  stem = f"{timing.machine_slug(results['machine'])}-{date}{'-quick' if quick else ''}"
  json_path = os.path.join(output_dir, stem + ".json")
  markdown_path = os.path.join(output_dir, stem + ".md")
  with open(json_path, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  with open(markdown_path, "w", encoding="utf-8") as f:
    f.write(report.to_markdown(results))
  return json_path, markdown_path


_ONLY = flags.DEFINE_list("only", list(SECTIONS), f"Sections to run: {', '.join(SECTIONS)}.")
_NETWORKS = flags.DEFINE_list("networks", list(NETWORKS), f"Networks: {', '.join(NETWORKS)}.")
_QUICK = flags.DEFINE_bool("quick", False, "Few steps and small evaluation sets.")
_ROUNDS = flags.DEFINE_integer("rounds", None, "Alternating timing rounds (default 12; 2 quick).")
_ROUND_SECONDS = flags.DEFINE_float("round_seconds", None, "Seconds per contender per round.")
_MATMUL_SIZE = flags.DEFINE_integer("matmul_size", None, "Side of the peak matrix product.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir (default: tfds's).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", RESULTS_DIR, "Where results files go.")
_PARALLEL = flags.DEFINE_enum("parallel", None, ["auto", "pmap", "shard_map"],
                              "Data-parallel mode of steps and loop (default: the configs').")
_CORES = flags.DEFINE_integer(
    "cores", None, "Run on the first N CPU cores only (process affinity, set before jax "
    "starts; PyTorch gets as many threads). Default: all the process may use.")
_CHILD_OUTPUT = flags.DEFINE_string("child_output", None,
                                    "Internal (scaling): write the JSON here and nothing else.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if _CORES.value:  # Before jax starts: XLA sizes its thread pool by the usable cores.
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:_CORES.value])
  overrides = {"sections": tuple(_ONLY.value), "networks": tuple(_NETWORKS.value),
               "data_dir": _DATA_DIR.value, "parallel_mode": _PARALLEL.value}
  for name, flag in [("rounds", _ROUNDS), ("round_seconds", _ROUND_SECONDS),
                     ("matmul_size", _MATMUL_SIZE)]:
    if flag.value is not None:
      overrides[name] = flag.value
  options = Options.quick(**overrides) if _QUICK.value else Options(**overrides)
  results = run_benchmarks(options)
  if _CHILD_OUTPUT.value:
    with open(_CHILD_OUTPUT.value, "w", encoding="utf-8") as f:
      json.dump(results, f)
    return
  from benchmarks import report
  json_path, markdown_path = write_results(results, _OUTPUT_DIR.value, _QUICK.value)
  print(report.to_markdown(results))
  print(f"Wrote {json_path} and {markdown_path}")


if __name__ == "__main__":
  app.run(main)
