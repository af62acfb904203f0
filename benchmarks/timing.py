"""Timing primitives of the benchmark harness: summaries, interleaved rounds, the machine stamp.

On a shared machine the load changes from second to second, so everything compared in one
table is timed in alternating rounds (`interleaved`): each contender then sees the same mix of
quiet and busy moments, and their ratio is far steadier than either number alone.
"""

import datetime
import os
import platform
import re
import time
from typing import Callable, Dict, List, Sequence

import numpy as np


def summarize(seconds: Sequence[float]) -> Dict[str, float]:
  """Median, quartiles, interquartile range, minimum and count of durations in seconds."""
  values = np.asarray(seconds, np.float64)
  if values.size == 0:
    raise ValueError("no timings to summarize")
  q25, median, q75 = np.percentile(values, [25, 50, 75])
  return {
    "median": float(median),
    "q25": float(q25),
    "q75": float(q75),
    "iqr": float(q75 - q25),
    "min": float(values.min()),
    "n": int(values.size),
  }


def time_calls(fn: Callable[[], object], count: int) -> List[float]:
  """Seconds of each of `count` calls of `fn` (which must block until its work is done)."""
  durations = []
  for _ in range(count):
    start = time.perf_counter()
    fn()
    durations.append(time.perf_counter() - start)
  return durations


def calls_per_round(fn: Callable[[], object], round_seconds: float, warmup: int = 2) -> int:
  """Warms `fn` up and returns how many calls fill about `round_seconds` (at least 1)."""
  time_calls(fn, warmup)
  one = float(np.median(time_calls(fn, 3)))
  return max(1, int(round(round_seconds / max(one, 1e-9))))


def interleaved(
  runners: Dict[str, Callable[[], object]], counts: Dict[str, int], rounds: int
) -> Dict[str, List[float]]:
  """Per-call seconds of each runner, run `counts[name]` times per round, in turn, `rounds` times."""
  durations: Dict[str, List[float]] = {name: [] for name in runners}
  for _ in range(rounds):
    for name, fn in runners.items():
      durations[name].extend(time_calls(fn, counts[name]))
  return durations


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def usable_cores() -> int:
  """CPU cores this process may run on (its affinity), the thread count both frameworks use."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def machine_stamp() -> Dict[str, object]:
  """What ran the benchmark: CPU, cores, memory, load, JAX version, backend and devices."""
  import jax
  import jaxlib

  devices = jax.devices()
  stamp = {
    "cpu_model": _cpu_model(),
    "cores": usable_cores(),
    "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "backend": jax.default_backend(),
    "device_kind": devices[0].device_kind,
    "num_devices": len(devices),
    "devices": [str(d) for d in devices],
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "date": datetime.datetime.now().isoformat(timespec="seconds"),
  }
  try:
    import flax

    stamp["flax"] = flax.__version__
  except ImportError:
    pass
  return stamp


def machine_slug(stamp: Dict[str, object]) -> str:
  """A file-name-safe machine name, e.g. `cpu-amd-epyc-2cores` or `gpu-nvidia-h100-...`."""
  what = stamp["cpu_model"] if stamp["backend"] == "cpu" else stamp["device_kind"]
  name = f"{stamp['backend']}-{what}-{stamp['cores']}cores"
  return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
