"""Every image variant on `digits28`, trained and evaluated at one budget, in one table.

  python -m experiments.digits28_variants --out runs/digits28_variants \
      [--gan_steps 400] [--num_samples 2000]

Finds the configs under `experiments/configs/` whose dataset is `digits28` and whose family
is a generative one (a new variant's config appears without editing this file), trains each
through `aigc_jax.training.train_and_evaluate` (AE/VAE for their configured steps, GANs for
`--gan_steps`, since a DCGAN step costs about 50x an MLP VAE step on a CPU), evaluates it
with `report.evaluate_run` against the digits classifier (trained first, once), and writes
`OUT/results.md` and `OUT/results.json`: per variant the fidelity of the AE/VAE, FID, the
estimated rates with their 95% intervals and real-data floors, and the control error of the
conditional models. One seed per variant: the intervals are over samples, not over seeds.
Rerunning the same command reuses every finished run; Ctrl-C keeps what finished (exit 75).
"""

from experiments import signals

if __name__ == "__main__":
  signals.record()  # Before the imports: a Ctrl-C during them is not a traceback.

# pylint: disable=wrong-import-position
import glob
import importlib
import json
import os
import sys
import time
from typing import Any, Dict, List

from absl import app, flags

_OUT = flags.DEFINE_string("out", None, "Output folder (runs and results).", required=True)
_GAN_STEPS = flags.DEFINE_integer(
  "gan_steps", 400, "Training steps of each GAN variant.", lower_bound=1
)
_NUM_SAMPLES = flags.DEFINE_integer(
  "num_samples", 2000, "Samples per evaluation (> 128).", lower_bound=129
)
_ONLY = flags.DEFINE_list("only", [], "Config names to run (default: every digits28 variant).")
_DATA_DIR = flags.DEFINE_string(
  "data_dir", "", "tfds data_dir (default: OUT/tfds; created if missing)."
)

GENERATIVE = ("ae", "vae", "gan")
RATES = (
  "reconstruction_class_flip_rate",
  "manifold_hallucination_rate",
  "unrecognisable_rate",
  "control_error_rate",
)


def variant_configs() -> Dict[str, Any]:
  """{config name: config} of every generative config on digits28, in name order."""
  configs = {}
  folder = os.path.join(os.path.dirname(__file__), "configs")
  for path in sorted(glob.glob(os.path.join(folder, "*.py"))):
    name = os.path.basename(path)[:-3]
    if name in ("__init__", "base"):
      continue
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    if config.dataset.name == "digits28" and config.model.family in GENERATIVE:
      configs[name] = config
  return configs


def _rate_cell(value: Dict[str, Any]) -> str:
  floor = value.get("floor")
  text = f"{value['rate']:.3f} [{value['ci_low']:.3f}, {value['ci_high']:.3f}]"
  return text + (f" (floor {floor['rate']:.3f})" if floor else "")


def summary_row(name: str, config, results: Dict[str, Any], seconds: float) -> Dict[str, Any]:
  """The table's numbers of one evaluated variant."""
  row: Dict[str, Any] = {
    "config": name,
    "family": config.model.family,
    "steps": int(config.train.num_steps),
    "train_seconds": seconds,
  }
  if "fidelity" in results:
    row["mse"] = results["fidelity"]["mse"]["mean"]
    row["ssim"] = results["fidelity"]["ssim"]["mean"]
  generation = results.get("generation", {})
  for key in ("fid", "precision", "recall"):
    if key in generation:
      row[key] = generation[key]
  for rate in RATES:
    value = results.get("reconstruction", {}).get(rate) or generation.get(rate)
    if value is not None:
      row[rate] = value
  return row


def to_markdown(rows: List[Dict[str, Any]], num_samples: int) -> str:
  header = ["config", "family", "steps", "mse", "ssim", "fid", "precision", "recall", *RATES]
  lines = [
    f"# Image variants on digits28 ({num_samples} samples per evaluation, seed 0)",
    "",
    "Rates: value [95% Wilson interval] (floor: the same estimator on held-out real "
    "digits). '-' = not defined for the family.",
    "",
    "| " + " | ".join(header) + " |",
    "|" + "---|" * len(header),
  ]
  for row in rows:
    cells = [row["config"], row["family"], str(row["steps"])]
    for key in ("mse", "ssim", "fid", "precision", "recall"):
      cells.append(f"{row[key]:.4g}" if key in row else "-")
    cells += [_rate_cell(row[rate]) if rate in row else "-" for rate in RATES]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _rows_of_other_variants(out, names, gan_steps, num_samples):
  """Rows of an earlier run in `out` at the same budget for variants not in `names`.

  So that `--only` adds or replaces its rows instead of dropping the others.
  """
  path = os.path.join(out, "results.json")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    earlier = json.load(f)
  if (earlier.get("gan_steps"), earlier.get("num_samples")) != (gan_steps, num_samples):
    return []
  return [row for row in earlier["rows"] if row["config"] not in names]


def _num_steps(config) -> int:
  """The steps this command trains `config` for (GANs: --gan_steps)."""
  return _GAN_STEPS.value if config.model.family == "gan" else int(config.train.num_steps)


def selected_configs() -> Dict[str, Any]:
  """The configs to run, checked before jax starts: `--out`, `--data_dir`, `--only`, and the
  runs already in `--out` (a run trained further than this budget cannot be reused)."""
  from aigc_jax.errors import UnknownNameError, UserError  # pylint: disable=import-outside-toplevel
  from aigc_jax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  from experiments import cli  # pylint: disable=import-outside-toplevel

  for problem in (
    cli.out_folder_problem(_OUT.value),
    cli.folder_flag_problem("data_dir", _DATA_DIR.value or None, "a folder", must_exist=False),
  ):
    if problem:
      raise UserError(problem)
  configs = variant_configs()
  unknown = sorted(set(_ONLY.value) - set(configs))
  if unknown:
    raise UnknownNameError(
      f"--only names {', '.join(unknown)}, not digits28 variant configs; "
      f"choose from {', '.join(configs)}."
    )
  if _ONLY.value:
    configs = {name: configs[name] for name in _ONLY.value}
  for name, config in configs.items():
    step = workdir_lib.newest_step(os.path.join(_OUT.value, name))
    if step is not None and step > _num_steps(config):
      flag = (
        f"--gan_steps={step}"
        if config.model.family == "gan"
        else "another --out (its steps are the config's)"
      )
      raise UserError(
        f"{os.path.join(_OUT.value, name)} was trained for {step} steps, more "
        f"than the {_num_steps(config)} of this run; pass {flag}, or another "
        "--out."
      )
  return configs


def main(argv):
  from experiments import cli  # pylint: disable=import-outside-toplevel

  cli.no_positional_arguments(argv)
  configs = cli.run_reporting_user_errors(selected_configs)
  cli.run_reporting_user_errors(_run_interruptible, configs)


def interrupted(out: str):
  """(one line, exit code) of a Ctrl-C: what `out` holds that a rerun reuses (75), or 130."""
  path = os.path.join(out, "results.json")
  rows = []
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      rows = [row["config"] for row in json.load(f).get("rows", [])]
  if rows:
    return (
      f"Interrupted by Ctrl-C; saved: the rows of {', '.join(rows)} in {path}; run the "
      "same command again to resume (finished runs are reused).",
      75,
    )
  if glob.glob(os.path.join(out, "*", "checkpoints")):
    return (
      f"Interrupted by Ctrl-C; saved: checkpoints under {out}; run the same command "
      "again to resume.",
      75,
    )
  return f"Interrupted by Ctrl-C; nothing was saved in {out}.", 130


def _run_interruptible(configs):
  try:
    signals.start_raising()  # A Ctrl-C recorded during start-up is raised here.
    _run_all(configs)
  except KeyboardInterrupt:
    message, code = interrupted(os.path.abspath(_OUT.value))
    signals.ignore()  # A second Ctrl-C must not cut this message short.
    print(message, file=sys.stderr)
    signals.exit_now(code)


def _train_unless_finished(config, workdir: str) -> None:
  """Trains (or resumes) the run in `workdir`; a finished one is left as it is (the training
  loop's note on it names --config flags, which this command does not have)."""
  from aigc_jax import training  # pylint: disable=import-outside-toplevel
  from aigc_jax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel

  if workdir_lib.newest_step(workdir) == int(config.train.num_steps):
    print(f"{workdir}: finished at step {config.train.num_steps}, reused")
    return
  training.train_and_evaluate(config, workdir)


def _run_all(configs):
  from aigc_jax.evaluation import report  # pylint: disable=import-outside-toplevel
  from experiments.configs import classifier_digits  # pylint: disable=import-outside-toplevel

  out = os.path.abspath(_OUT.value)
  data_dir = _DATA_DIR.value or os.path.join(out, "tfds")
  os.makedirs(data_dir, exist_ok=True)
  classifier_dir = os.path.join(out, "classifier_digits28")
  config = classifier_digits.get_config()
  config.dataset.data_dir = data_dir
  _train_unless_finished(config, classifier_dir)  # Resumed if it was interrupted.
  rows = _rows_of_other_variants(out, set(configs), _GAN_STEPS.value, _NUM_SAMPLES.value)
  for name, config in configs.items():
    config.train.num_steps = _num_steps(config)
    config.train.eval_every = config.train.sample_every = config.train.num_steps
    config.checkpoint.save_every = 0
    config.dataset.data_dir = data_dir
    workdir = os.path.join(out, name)
    start = time.perf_counter()
    _train_unless_finished(config, workdir)
    seconds = time.perf_counter() - start
    results = report.evaluate_run(
      workdir,
      classifier_workdir=classifier_dir,
      num_samples=_NUM_SAMPLES.value,
      seed=0,
      data_dir=data_dir,
    )
    rows.append(summary_row(name, config, results, seconds))
    rows.sort(key=lambda row: row["config"])
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
      json.dump(
        {"gan_steps": _GAN_STEPS.value, "num_samples": _NUM_SAMPLES.value, "rows": rows},
        f,
        indent=2,
      )
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
      f.write(to_markdown(rows, _NUM_SAMPLES.value))
  print(to_markdown(rows, _NUM_SAMPLES.value))


if __name__ == "__main__":
  from experiments import cli as _cli

  app.run(main, flags_parser=_cli.parse_flags)  # Flag errors in one line; library logs quiet.
