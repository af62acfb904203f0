"""Evaluates a trained run: flags -> `aigc_jax.evaluation.report.evaluate_run`.

  python -m experiments.train --config experiments/configs/classifier_digits.py \
      --workdir runs/classifier_digits28          # once per dataset: the feature space/oracle
  python -m experiments.evaluate --workdir runs/demo --classifier_workdir runs/classifier_digits28

Writes settings.json, eval.json, eval.md and hallucinated.png under
<workdir>/eval/step_<N>/samples_<n>_seed_<s>_<hash>/ (one folder per set of settings). The
run may be training meanwhile. Exit code 2 is a user error (one line on stderr).
"""
from absl import app, flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run to evaluate.", required=True)
_CLASSIFIER_WORKDIR = flags.DEFINE_string(
    "classifier_workdir", None, "A classifier run on the same dataset, the feature space and "
    "class oracle of image datasets (default: runs/classifier_<dataset>); points need none.")
_NUM_SAMPLES = flags.DEFINE_integer(
    "num_samples", 10_000, "Samples for the sample metrics; at least the classifier's feature "
    "width + 1 (129 for the digits classifier).", lower_bound=1)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest readable).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the samples and of KID's subsets.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir (default: the run's).")
_EVAL_DIR = flags.DEFINE_string("eval_dir", None, "Where reports go (default: <workdir>/eval).")


def main(argv):
  cli.no_positional_arguments(argv)
  from aigc_jax.evaluation import report  # After flag parsing, so jax sees the final flags.
  results = cli.run_reporting_user_errors(
      report.evaluate_run, _WORKDIR.value, classifier_workdir=_CLASSIFIER_WORKDIR.value,
      num_samples=_NUM_SAMPLES.value, step=_STEP.value, seed=_SEED.value,
      data_dir=_DATA_DIR.value, eval_dir=_EVAL_DIR.value)
  with open(f"{results['output_dir']}/eval.md", encoding="utf-8") as f:
    print(f.read())
  written = "eval.json, eval.md and hallucinated.png" if "generation" in results else (
      "eval.json and eval.md")
  print(f"Wrote {written} in {results['output_dir']}.")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
