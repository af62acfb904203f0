"""Trains a model: flags -> config -> `aigc_jax.training.train_and_evaluate`.

  python -m experiments.train --workdir runs/demo            # offline default: VAE on digits
  python -m experiments.train --config experiments/configs/dcgan28.py --workdir runs/gan \
      --config.train.num_steps=5000 --config.dataset.data_dir=/data/tfds

Rerunning on a workdir with checkpoints resumes from the newest readable one (--fresh starts
over). SIGTERM / SIGINT save a checkpoint and exit with code 75; exit code 2 is a user error
(one line on stderr), 1 a bug (traceback).
"""
import os

from absl import app, flags

from experiments import cli

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "vae_digits.py")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for metrics, images and checkpoints.",
                               required=True)
_FRESH = flags.DEFINE_bool(
    "fresh", False, "Start over even if --workdir holds checkpoints; the earlier run's "
    "checkpoints and logs are moved to <workdir>/discarded/<time>/, not deleted.")
_CONFIG = cli.define_config_flag(_DEFAULT_CONFIG)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from aigc_jax import training  # After flag parsing, so jax starts with the final XLA_FLAGS.
  cli.run_reporting_user_errors(training.train_and_evaluate, cli.config_value(_CONFIG),
                                _WORKDIR.value, fresh=_FRESH.value)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
