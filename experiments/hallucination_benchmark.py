"""The hallucination benchmark: families and variants on data with exactly known support.

  python -m experiments.hallucination_benchmark --out DIR [--quick] [--protocol standard|pacgan]
      [--only gaussian_ring8,gan_hinge,...] [--steps N] [--trials N] [--seeds N]
      [--eval_every N] [--pack_sizes 1,2,3,4] [--configs_dir experiments/configs]

Writes DIR/results.csv, results.md, results.json, calibration.csv and DIR/figures/*.png (see
`aigc_jax/hallucination_benchmark/`). Rerunning the same command continues where it stopped:
each finished setting is saved under DIR/settings/ and reused.
"""
import os

from absl import app, flags

_HERE = os.path.dirname(os.path.abspath(__file__))
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_PROTOCOL = flags.DEFINE_enum("protocol", "standard", ["standard", "pacgan"],
                              "standard: families and variants; pacgan: Lin et al.'s 2-D protocol.")
_QUICK = flags.DEFINE_bool("quick", False, "A reduced run for CI (about a minute on 2 cores); with --only, the quick budget on the settings named.")
_ONLY = flags.DEFINE_list("only", [], "Keep settings whose dataset, name or dataset/name is listed.")
_STEPS = flags.DEFINE_integer("steps", None, "Training steps of every setting (default: the "
                              "protocol's).")
_SEEDS = flags.DEFINE_integer("seeds", None, "Seeds per setting (standard protocol).")
_TRIALS = flags.DEFINE_integer("trials", None, "Trials per setting (pacgan protocol; default 10).")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", None, "pacgan protocol: steps between "
                                   "measurements (default 10,000).")
_PACK_SIZES = flags.DEFINE_list("pack_sizes", ["1", "2", "3", "4"], "pacgan protocol: pack sizes.")
_CONFIGS_DIR = flags.DEFINE_string("configs_dir", os.path.join(_HERE, "configs"),
                                   "Folder whose digits28 configs define the variants.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir of the shapes classifier's "
                                "training (default: tfds's).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from experiments import cli  # pylint: disable=import-outside-toplevel
  cli.run_reporting_user_errors(run)


def run():
  # Imported after flag parsing, so jax starts with the final XLA_FLAGS.
  from aigc_jax.hallucination_benchmark import protocols, runner  # pylint: disable=import-outside-toplevel
  from experiments.configs import classifier_shapes, hallucination_bases  # pylint: disable=import-outside-toplevel
  get_base = lambda dataset, family: hallucination_bases.get_config(f"{dataset},{family}")
  if _PROTOCOL.value == "pacgan":
    plan = protocols.pacgan_plan(hallucination_bases.pacgan_config, steps=_STEPS.value, trials=_TRIALS.value,
                                 eval_every=_EVAL_EVERY.value,
                                 pack_sizes=[int(p) for p in _PACK_SIZES.value],
                                 only=_ONLY.value, quick=_QUICK.value)
  else:
    plan = protocols.standard_plan(_CONFIGS_DIR.value, get_base, quick=_QUICK.value,
                                   steps=_STEPS.value, seeds=_SEEDS.value, only=_ONLY.value)
  classifier = classifier_shapes.get_config()
  if _QUICK.value:
    classifier.train.num_steps = protocols.QUICK_CLASSIFIER_STEPS
    classifier.train.eval_every = classifier.checkpoint.save_every = (
        protocols.QUICK_CLASSIFIER_STEPS)
  runner.run_plan(plan, _OUT.value, classifier, data_dir=_DATA_DIR.value)
  print(f"Results in {os.path.abspath(_OUT.value)}: results.csv, results.md, results.json, "
        "calibration.csv, figures/")


if __name__ == "__main__":
  from experiments import cli as _cli
  app.run(main, flags_parser=_cli.parse_flags)  # Flag errors in one line; library logs quiet.
