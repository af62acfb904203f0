"""Evaluates a trained run: flags -> `aigc_jax.evaluation.report.evaluate_run`.

  python -m experiments.train --config experiments/configs/classifier_digits.py \
      --workdir runs/classifier_digits28          # once per dataset: the feature space/oracle
  python -m experiments.evaluate --workdir runs/demo --classifier_workdir runs/classifier_digits28

Writes settings.json, eval.json, eval.md and hallucinated.png under
<workdir>/eval/step_<N>/samples_<n>_seed_<s>_<hash>/ (one folder per set of settings). The
run may be training meanwhile. Exit code 2 is a user error (one line on stderr).
Launched as several processes (the flags of experiments.train's multi-process runs), process
0 evaluates on its own devices and the others wait for it.
"""

from experiments import signals

if __name__ == "__main__":
  signals.record()  # Before the imports: a Ctrl-C during them is not a traceback.

# pylint: disable=wrong-import-position
import glob
import importlib
import json
import os
from typing import Dict, Optional

from absl import app, flags

from experiments import cli

_CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
_MAX_SEED = 2**32 - 1  # As experiments.train's config.seed: grain's shuffle seed range.

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run to evaluate.", required=True)
_CLASSIFIER_WORKDIR = flags.DEFINE_string(
  "classifier_workdir",
  None,
  "A classifier run on the same dataset, the feature space and "
  "class oracle of image datasets (default: runs/classifier_<dataset>); points need none.",
)
_NUM_SAMPLES = flags.DEFINE_integer(
  "num_samples",
  10_000,
  "Samples for the sample metrics; at least the classifier's feature "
  "width + 1 (129 for the digits classifier).",
  lower_bound=1,
)
_STEP = flags.DEFINE_integer(
  "step",
  None,
  "Checkpoint step (default: the newest readable, from checkpoints/ or its "
  "copy in checkpoints_best/).",
  lower_bound=0,
)
_SEED = flags.DEFINE_integer(
  "seed",
  0,
  f"Seed of the samples and of KID's subsets, 0 to {_MAX_SEED} (as training's config.seed).",
  lower_bound=0,
  upper_bound=_MAX_SEED,
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir (default: the run's).")
_EVAL_DIR = flags.DEFINE_string("eval_dir", None, "Where reports go (default: <workdir>/eval).")
cli.define_distributed_flags()


def _saved_family(workdir: str) -> Optional[str]:
  """model.family of the config a training run saved in `workdir/config.json`, or None."""
  try:
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
      return json.load(f)["model"]["family"]
  except (OSError, ValueError, KeyError, TypeError):
    return None


def flag_problem(
  workdir: str, classifier_workdir: Optional[str], data_dir: Optional[str], eval_dir: Optional[str]
) -> Optional[str]:
  """The first thing wrong with the folders the flags name, in one sentence, or None.

  Checked before jax starts: each looks only at the file system.
  """
  run = "the --workdir of an experiments.train run, e.g. --workdir=runs/demo"
  problem = cli.folder_flag_problem("workdir", workdir, run, must_exist=True)
  if problem:
    return problem
  if classifier_workdir is not None and not classifier_workdir.strip():
    return (
      "--classifier_workdir is empty; pass a classifier run on the run's dataset, or "
      "omit the flag (default runs/classifier_<dataset>)."
    )
  # A classifier_workdir that does not exist is left to the evaluation, which knows the
  # run's dataset and so the command that trains its classifier.
  problem = cli.folder_flag_problem(
    "data_dir",
    data_dir,
    "the tfds data_dir the run was trained with, or omit the flag",
    must_exist=True,
  )
  if problem:
    return problem
  if not any(os.path.isdir(os.path.join(workdir, d)) for d in ("checkpoints", "checkpoints_best")):
    return f"--workdir {workdir} is not a training run (it has no checkpoints/ folder); pass {run}."
  family = _saved_family(workdir)
  if family == "classifier":
    return (
      f"--workdir {workdir} is a classifier run; experiments.evaluate evaluates "
      "generative models only (ae, vae, gan). A classifier run serves as "
      "--classifier_workdir."
    )
  return cli.folder_flag_problem(
    "eval_dir",
    eval_dir,
    "a folder for the reports, or omit the flag (default <workdir>/eval)",
    must_exist=False,
  )


def classifier_configs() -> Dict[str, str]:
  """`{dataset name: "experiments/configs/classifier_*.py"}`: the configs that train the
  classifier (feature space and class oracle) of each dataset."""
  found = {}
  for path in sorted(glob.glob(os.path.join(_CONFIGS_DIR, "classifier_*.py"))):
    name = os.path.splitext(os.path.basename(path))[0]
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    found.setdefault(config.dataset.name, f"experiments/configs/{name}.py")
  return found


def main(argv):
  cli.no_positional_arguments(argv)
  problem = flag_problem(
    _WORKDIR.value, _CLASSIFIER_WORKDIR.value, _DATA_DIR.value, _EVAL_DIR.value
  )
  if problem:
    cli.fail(problem)
  settings = cli.distributed_settings()
  cli.supervise(settings)
  cli.start_distributed(settings)
  if settings.requested:
    import jax  # pylint: disable=import-outside-toplevel

    if jax.process_index() != 0:  # Process 0 evaluates on its own devices; the others wait.
      from aigc_jax import distributed  # pylint: disable=import-outside-toplevel

      distributed.barrier("evaluation done")
      return
  from aigc_jax.evaluation import report  # After flag parsing, so jax sees the final flags.

  # Nothing is written before the end: a Ctrl-C from here on is one line and 130.
  cli.run_reporting_user_errors(signals.start_raising)
  results = cli.run_reporting_user_errors(
    report.evaluate_run,
    _WORKDIR.value,
    classifier_workdir=_CLASSIFIER_WORKDIR.value,
    num_samples=_NUM_SAMPLES.value,
    step=_STEP.value,
    seed=_SEED.value,
    data_dir=_DATA_DIR.value,
    eval_dir=_EVAL_DIR.value,
    classifier_configs=classifier_configs(),
  )
  with open(f"{results['output_dir']}/eval.md", encoding="utf-8") as f:
    print(f.read())
  written = (
    "eval.json, eval.md and hallucinated.png"
    if "generation" in results
    else ("eval.json and eval.md")
  )
  print(f"Wrote {written} in {results['output_dir']}.")
  if settings.requested:
    from aigc_jax import distributed  # pylint: disable=import-outside-toplevel

    distributed.barrier("evaluation done")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
