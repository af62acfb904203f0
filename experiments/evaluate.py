"""Evaluates a trained run: flags -> `aigc_jax.evaluation.report.evaluate_run`.

  python -m experiments.train --config experiments/configs/classifier_digits.py \
      --workdir runs/classifier_digits28          # once per dataset: the feature space/oracle
  python -m experiments.evaluate --workdir runs/demo --classifier_workdir runs/classifier_digits28

Writes eval.json, eval.md and hallucinated.png under <workdir>/eval/step_<N>/.
"""
from absl import app, flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run to evaluate.", required=True)
_CLASSIFIER_WORKDIR = flags.DEFINE_string(
    "classifier_workdir", None, "A classifier run on the same dataset (default: "
    "runs/classifier_<dataset>).")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 10_000, "Samples for the sample metrics.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest readable).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the samples and of KID's subsets.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir (default: the run's).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from aigc_jax.evaluation import report  # After flag parsing, so jax sees the final flags.
  results = cli.run_reporting_user_errors(
      report.evaluate_run, _WORKDIR.value, classifier_workdir=_CLASSIFIER_WORKDIR.value,
      num_samples=_NUM_SAMPLES.value, step=_STEP.value, seed=_SEED.value,
      data_dir=_DATA_DIR.value)
  print(open(f"{results['output_dir']}/eval.md", encoding="utf-8").read())
  print(f"Wrote {results['output_dir']}/eval.json, eval.md and hallucinated.png (if sampled).")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
