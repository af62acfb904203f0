"""The README's default job end to end, from the command to exit, against plain PyTorch.

Times, in alternating rounds (`timing.interleaved`), each as a fresh process:
  * jax:   `python -m experiments.train --config experiments/configs/vae_digits.py
           --workdir <new folder> --config.dataset.data_dir <prepared folder>`;
  * jax, compilation cache: the same with JAX's persistent compilation cache
    (`JAX_COMPILATION_CACHE_DIR`, every program cached), warm: what a rerun costs;
  * torch: `python -m benchmarks.torch_default_job --out <new folder>` (same training).
The dataset is prepared once before the rounds (its first-use cost is timed apart, also as a
fresh process, which also fills the compilation cache). Results: `benchmarks/results/default-job-<machine>-<date>.json` and `.md`.

  python -m benchmarks.default_job [--rounds 3]   (needs `.[bench]` for the PyTorch side)
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

from benchmarks import timing
from experiments import cli

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")


def _run(command: List[str], env: Optional[Dict[str, str]] = None) -> float:
  """Seconds from start to exit of `command`; raises with its stderr's tail if it fails."""
  start = time.perf_counter()
  result = subprocess.run(
    command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
  )
  seconds = time.perf_counter() - start
  if result.returncode:
    raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr[-2000:]}")
  return seconds


def _train_command(workdir: str, data_dir: str, extra: List[str]) -> List[str]:
  return [
    sys.executable,
    "-m",
    "experiments.train",
    "--config",
    "experiments/configs/vae_digits.py",
    f"--workdir={workdir}",
    f"--config.dataset.data_dir={data_dir}",
    *extra,
  ]


def _positive_int(text: str) -> int:
  if not text.isdigit() or int(text) < 1:
    raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
  return int(text)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.error = cli.fail  # One line `error: ...` and exit 2, as every command of the project.
  parser.add_argument("--rounds", type=_positive_int, default=3)
  parser.add_argument("--steps", type=_positive_int, default=1500)
  parser.add_argument("--output_dir", default=RESULTS_DIR)
  args = parser.parse_args()
  if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
    cli.fail(f"--output_dir {args.output_dir} is a file; pass a folder.")
  scratch = tempfile.mkdtemp(prefix="default_job_")
  data_dir = os.path.join(scratch, "data")
  os.makedirs(data_dir)
  steps = [f"--config.train.num_steps={args.steps}"]
  runs = iter(range(10**6))
  cached = dict(
    os.environ,
    JAX_COMPILATION_CACHE_DIR=os.path.join(scratch, "jax_cache"),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
  )
  # First use: the dataset is generated as part of the run (and the cache filled).
  first_use = _run(_train_command(os.path.join(scratch, "first"), data_dir, steps), cached)
  runners = {
    "jax": lambda: _run(_train_command(os.path.join(scratch, f"jax{next(runs)}"), data_dir, steps)),
    "jax, compilation cache": lambda: _run(
      _train_command(os.path.join(scratch, f"jax{next(runs)}"), data_dir, steps), cached
    ),
    "torch": lambda: _run(
      [
        sys.executable,
        "-m",
        "benchmarks.torch_default_job",
        "--out",
        os.path.join(scratch, f"torch{next(runs)}"),
        "--steps",
        str(args.steps),
      ]
    ),
  }
  load_at_start = [round(x, 2) for x in os.getloadavg()]
  durations = timing.interleaved(runners, {name: 1 for name in runners}, args.rounds)
  seconds: Dict[str, Dict[str, float]] = {k: timing.summarize(v) for k, v in durations.items()}
  machine = timing.machine_stamp()
  results = {
    "machine": machine,
    "steps": args.steps,
    "rounds": args.rounds,
    "load_average_at_start": load_at_start,
    "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    "first_use_seconds": first_use,
    "seconds": seconds,
    "runs": durations,
    "jax_over_torch_time": seconds["jax"]["median"] / seconds["torch"]["median"],
    "cached_jax_over_torch_time": (
      seconds["jax, compilation cache"]["median"] / seconds["torch"]["median"]
    ),
  }
  os.makedirs(args.output_dir, exist_ok=True)
  stem = os.path.join(
    args.output_dir,
    f"default-job-{timing.machine_slug(machine)}-{datetime.date.today().isoformat()}",
  )
  with open(stem + ".json", "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  lines = [
    f"# The default job end to end ({args.steps} steps of vae_digits), "
    f"{machine['cpu_model']}, {machine['cores']} cores",
    "",
    f"{machine['date']}; jax {machine['jax']}; load average {load_at_start[0]} at the "
    f"start, {results['load_average_at_end'][0]} at the end; {args.rounds} alternating "
    "rounds, each a fresh process, dataset prepared before the rounds.",
    "",
    "| command | median s | quartiles s | runs s |",
    "|---|---|---|---|",
  ]
  for name, s in seconds.items():
    runs_text = ", ".join(f"{x:.1f}" for x in durations[name])
    lines.append(f"| {name} | {s['median']:.1f} | {s['q25']:.1f}, {s['q75']:.1f} | {runs_text} |")
  lines += [
    "",
    f"jax time / torch time: {results['jax_over_torch_time']:.2f} (with a warm "
    f"compilation cache: {results['cached_jax_over_torch_time']:.2f}). "
    f"First use (jax, dataset generated in the run): {first_use:.1f} s.",
    "",
  ]
  with open(stem + ".md", "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
  print("\n".join(lines))
  print(f"Wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
  main()
