"""Trains a model: flags -> config -> `aigc_jax.training.train_and_evaluate`.

  python -m experiments.train --workdir runs/demo            # offline default: VAE on digits
  python -m experiments.train --config experiments/configs/dcgan28.py --workdir runs/gan \
      --config.train.num_steps=5000 --config.dataset.data_dir=/data/tfds
  python -m experiments.train --config runs/gan/config.json --workdir runs/gan2 \
      --config.seed=1                                        # a run's saved config, reused

Rerunning on a workdir with checkpoints resumes from the newest readable one (--fresh starts
over); a resume may change only the keys in `aigc_jax.config_rules.CHANGEABLE_ON_RESUME`
unless --allow_config_change. One run per workdir (a second one is refused). SIGTERM /
SIGINT save a checkpoint and exit with code 75 (a Ctrl-C before the first step: exit 130,
nothing saved; see experiments/signals.py); exit code 2 is a user error (one line on stderr),
1 a bug (traceback). Library logs: --verbosity=0 (INFO) or 1 (DEBUG).

One process of a multi-process run (docs/multi_host.md): the same command on
every process, with --coordinator_address, --num_processes, --process_id (or the JAX_*
environment variables) or --distributed (SLURM, TPU pods); exit code 69 when another process
of the run died.
"""

from experiments import signals

if __name__ == "__main__":
  signals.record()  # Before anything else is imported: no Ctrl-C may reach jax's internals.

import os  # pylint: disable=wrong-import-position

from absl import app, flags  # pylint: disable=wrong-import-position

from experiments import cli  # pylint: disable=wrong-import-position

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "vae_digits.py")
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Directory for metrics, images and checkpoints.", required=True
)
_FRESH = flags.DEFINE_bool(
  "fresh",
  False,
  "Start over even if --workdir holds checkpoints; the earlier run's "
  "outputs (checkpoints, logs, config.json, eval/) are moved to <workdir>/discarded/<time>/, "
  "not deleted.",
)
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
  "allow_config_change",
  False,
  "Resume even though keys that change training (model, "
  "optimizer, seed, batch size...) differ from the checkpoint's; the changes are recorded "
  "in <workdir>/resumes.jsonl.",
)
_CONFIG = cli.define_config_flag(_DEFAULT_CONFIG)
cli.define_distributed_flags()


def main(argv):
  cli.no_positional_arguments(argv)
  config = cli.config_value(_CONFIG)
  from aigc_jax import config_rules  # pylint: disable=import-outside-toplevel

  cli.run_reporting_user_errors(config_rules.check_config, config)  # Before jax starts.
  settings = cli.distributed_settings()
  signals.exit_if_pending()
  cli.supervise(settings)  # A multi-process run: from here on, in the supervised child.
  cli.start_distributed(settings)
  from aigc_jax import training  # After flag parsing, so jax starts with the final XLA_FLAGS.

  signals.exit_if_pending()  # A Ctrl-C during jax's start-up; the loop reads it from here on.
  cli.run_reporting_user_errors(
    training.train_and_evaluate,
    config,
    _WORKDIR.value,
    fresh=_FRESH.value,
    allow_config_change=_ALLOW_CONFIG_CHANGE.value,
  )


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
