"""Trains a model: flags -> config -> `aigc_jax.training.train_and_evaluate`.

  python -m experiments.train --workdir runs/demo            # offline default: VAE on digits
  python -m experiments.train --config experiments/configs/dcgan28.py --workdir runs/gan \
      --config.train.num_steps=5000 --config.dataset.data_dir=/data/tfds

Rerunning on a workdir with checkpoints resumes from the newest readable one (--fresh starts
over); a resume may change only the keys in `aigc_jax.config_rules.CHANGEABLE_ON_RESUME`
unless --allow_config_change. One run per workdir (a second one is refused). SIGTERM /
SIGINT save a checkpoint and exit with code 75; exit code 2 is a user error (one line on
stderr), 1 a bug (traceback). Library logs: --verbosity=0 (INFO) or 1 (DEBUG).
"""
import os

from absl import app, flags

from experiments import cli

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "vae_digits.py")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for metrics, images and checkpoints.",
                               required=True)
_FRESH = flags.DEFINE_bool(
    "fresh", False, "Start over even if --workdir holds checkpoints; the earlier run's "
    "outputs (checkpoints, logs, config.json, eval/) are moved to <workdir>/discarded/<time>/, "
    "not deleted.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume even though keys that change training (model, "
    "optimizer, seed, batch size...) differ from the checkpoint's; the changes are recorded "
    "in <workdir>/resumes.jsonl.")
_CONFIG = cli.define_config_flag(_DEFAULT_CONFIG)


def main(argv):
  cli.no_positional_arguments(argv)
  config = cli.config_value(_CONFIG)
  from aigc_jax import config_rules  # pylint: disable=import-outside-toplevel
  cli.run_reporting_user_errors(config_rules.check_config, config)  # Before jax starts.
  from aigc_jax import training  # After flag parsing, so jax starts with the final XLA_FLAGS.
  cli.run_reporting_user_errors(training.train_and_evaluate, config, _WORKDIR.value,
                                fresh=_FRESH.value,
                                allow_config_change=_ALLOW_CONFIG_CHANGE.value)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
