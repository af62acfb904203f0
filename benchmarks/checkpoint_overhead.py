"""Step time of `dcgan28` training with and without checkpoint saves every 100 steps.

  python -m benchmarks.checkpoint_overhead [--num_steps=600] [--dataset=digits28]

Trains the `dcgan28` networks three times on one device with everything but saving switched
off: no periodic saves (only the final one), async saves every 100 steps, and synchronous
saves every 100 steps. Prints milliseconds per step measured between the first and the last
logged step (compilation and the final save excluded), and the overhead relative to no saves.
Step-time differences of a few percent are within the noise of a shared CPU, so it also times
the save itself: how long `Checkpointer.save` keeps training waiting, async and synchronous.
"""

import json
import os
import tempfile
import time

from absl import app, flags

from experiments import cli

_NUM_STEPS = flags.DEFINE_integer(
  "num_steps",
  300,
  "Training steps per run (at least 100: the runs save every 100).",
  lower_bound=100,
)
_DATASET = flags.DEFINE_enum(
  "dataset",
  "digits28",
  ["digits28", "mnist", "fashion_mnist"],
  "A 28x28 dataset for the dcgan28 networks.",
)


def run(save_every: int, async_save: bool, num_steps: int, dataset: str) -> float:
  from aigc_jax import training
  from experiments.configs import dcgan28

  config = dcgan28.get_config()
  config.dataset.name = dataset
  config.train.num_steps = num_steps
  config.train.log_every = 50
  config.train.eval_every = 0
  config.train.sample_every = 0
  config.checkpoint.save_every = save_every
  config.checkpoint.async_save = async_save
  with tempfile.TemporaryDirectory() as workdir:
    training.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      rows = [json.loads(line) for line in f if '"train"' in line]
  # Each log's samples_per_second covers the 50 steps before it, saves included; the first
  # window holds the compilation and is left out.
  ms_per_window = [1000 * config.train.batch_size / r["samples_per_second"] for r in rows[1:]]
  return sum(ms_per_window) / len(ms_per_window)


def time_saves(num_saves: int = 10):
  """Milliseconds training waits per save of the dcgan28 state: (async, synchronous)."""
  import jax
  from aigc_jax import checkpointing, data
  from aigc_jax.training.family import get_family
  from experiments.configs import dcgan28

  config = dcgan28.get_config()
  config.dataset.name = "digits28"
  state = jax.device_put(get_family(config, (28, 28, 1)).init(jax.random.PRNGKey(0)))
  iterator = data.create_iterator(
    "digits28", "train", global_batch_size=64, num_local_devices=1, seed=0, train=True
  )
  timings = []
  for async_save in (True, False):
    with tempfile.TemporaryDirectory() as workdir:
      checkpointer = checkpointing.Checkpointer(workdir, keep_last=2, async_save=async_save)
      elapsed = []
      for step in range(1, num_saves + 1):
        start = time.perf_counter()
        checkpointer.save(step, state, jax.random.PRNGKey(0), iterator, config)
        elapsed.append(time.perf_counter() - start)
        checkpointer.wait()  # Not counted: with async saves it overlaps the next 100 steps.
      checkpointer.close()
    timings.append(1000 * sorted(elapsed)[len(elapsed) // 2])
  return timings


def main(argv):
  cli.no_positional_arguments(argv)
  async_ms, sync_ms = time_saves()
  print(
    f"one save of the dcgan28 state blocks training for {async_ms:.1f} ms (async) and "
    f"{sync_ms:.1f} ms (synchronous), median of 10"
  )
  results = {}
  for name, save_every, async_save in [
    ("no periodic saves", 0, True),
    ("async saves every 100", 100, True),
    ("sync saves every 100", 100, False),
  ]:
    results[name] = run(save_every, async_save, _NUM_STEPS.value, _DATASET.value)
  base = results["no periodic saves"]
  for name, ms in results.items():
    print(f"{name:24s} {ms:7.2f} ms/step  ({100 * (ms / base - 1):+.1f}%)")
  print(
    f"per step, saving every 100 steps costs {async_ms / 100:.2f} ms async "
    f"({async_ms / base:.2f}% of a step) and {sync_ms / 100:.2f} ms synchronous "
    f"({sync_ms / base:.2f}%)"
  )


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)  # Flag errors in one line; library logs quiet.
