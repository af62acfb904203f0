"""Where a train step's time goes: per-op times of the compiled step, from a profiler trace.

  python -m benchmarks.profile_step --network=dcgan28 [--steps=20] [--top=25] [--parallel=pmap]

Builds the network's bare step as `benchmarks.run` does, traces `--steps` steps with
`jax.profiler`, and prints the ops (XLA thunks: fusions, convolutions, dots, collectives)
that took the most time per step, each with the JAX operation it came from (the HLO's
`op_name` metadata, e.g. `transpose(jvp(Discriminator))/encoder/Conv_1/conv_general_dilated`
for a gradient of the discriminator's second convolution) and its share of the step's wall
time. Ops run one after another on the CPU backend, so the shares add up to the compute time;
the rest is dispatch and waiting.
"""

import collections
import glob
import gzip
import json
import re
import tempfile
import time
from typing import Dict, List

from absl import app, flags

from experiments import cli

_NETWORK = flags.DEFINE_enum(
  "network", "dcgan28", ["mlp_vae", "dcgan28", "conv_ae"], "The network whose train step is traced."
)
_STEPS = flags.DEFINE_integer("steps", 20, "Steps traced.", lower_bound=1)
_TOP = flags.DEFINE_integer("top", 25, "Ops listed.", lower_bound=1)
_PARALLEL = flags.DEFINE_enum(
  "parallel", None, ["auto", "pmap", "shard_map"], "Data-parallel mode (default: the config's)."
)

# Trace events that are not ops of the step (the runtime's own spans around them).
_NOT_OPS = re.compile(
  r"^(ThunkExecutor|\$|PjitFunction|CommonPjRt|SlinkyThreadPool|"
  r"PmapFunction|TfrtCpu|Execute)"
)


def op_sources(hlo_text: str) -> Dict[str, str]:
  """HLO instruction name -> the `op_name` of its metadata (where it came from in JAX)."""
  sources = {}
  for match in re.finditer(
    r"^\s*(?:ROOT )?%?([\w.\-]+) = [^\n]*?op_name=\"([^\"]+)\"", hlo_text, re.MULTILINE
  ):
    sources.setdefault(match.group(1), match.group(2))
  return sources


def profile(network: str, num_steps: int, parallel_mode=None) -> Dict[str, object]:
  """Per-op microseconds per step of `network`'s bare step, and the step's wall time."""
  import jax
  from benchmarks import workloads

  bare = workloads.bare_step(network, parallel_mode=parallel_mode)
  for _ in range(3):
    bare.run()
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    start = time.perf_counter()
    for _ in range(num_steps):
      bare.run()
    wall = (time.perf_counter() - start) / num_steps
    jax.profiler.stop_trace()
    trace_file = sorted(glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True))[-1]
    with gzip.open(trace_file) as f:
      events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
  totals: Dict[str, float] = collections.Counter()
  for event in events:
    if not _NOT_OPS.match(event["name"]):
      totals[event["name"]] += event["dur"] / num_steps
  return {
    "network": network,
    "step_seconds": wall,
    "op_microseconds": dict(totals),
    "sources": op_sources(bare.hlo_text()),
  }


def format_table(result: Dict[str, object], top: int) -> List[str]:
  step_us = 1e6 * result["step_seconds"]
  ops = sorted(result["op_microseconds"].items(), key=lambda kv: -kv[1])
  lines = [
    f"{result['network']}: {step_us / 1e3:.2f} ms per step (wall, traced), "
    f"ops {sum(result['op_microseconds'].values()) / 1e3:.2f} ms",
    f"{'ms':>8} {'share':>6}  op  <-  source",
  ]
  for name, micros in ops[:top]:
    source = result["sources"].get(name, "")
    source = re.sub(r"^jit\([^)]*\)/", "", source)
    lines.append(f"{micros / 1e3:8.3f} {100 * micros / step_us:5.1f}%  {name}  <-  {source}")
  return lines


def main(argv):
  cli.no_positional_arguments(argv)
  result = profile(_NETWORK.value, _STEPS.value, _PARALLEL.value)
  print("\n".join(format_table(result, _TOP.value)))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)  # Flag errors in one line; library logs quiet.
