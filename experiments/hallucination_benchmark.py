"""The hallucination benchmark: families and variants on data with exactly known support.

  python -m experiments.hallucination_benchmark --out DIR [--quick]
      [--protocol standard|pacgan|aithal]
      [--only gaussian_ring8,gan_hinge,...] [--steps N] [--trials N] [--seeds N]
      [--eval_every N] [--pack_sizes 1,2,3,4] [--configs_dir experiments/configs] [--overwrite]

Writes DIR/results.csv, results.md, results.json, calibration.csv and DIR/figures/*.png (see
`aigc_jax/hallucination_benchmark/`). Rerunning the same command continues where it stopped:
each finished setting is saved under DIR/settings/ and reused, and the tables are rebuilt
from every finished setting in DIR. A rerun whose flags would replace a saved setting with
another one (other steps, seeds, --quick...) is refused unless --overwrite is given.
"""

from experiments import signals

if __name__ == "__main__":
  signals.record()  # Before the imports: a Ctrl-C during them is not a traceback.

# pylint: disable=wrong-import-position
import os
import sys

from absl import app, flags

_HERE = os.path.dirname(os.path.abspath(__file__))
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_PROTOCOL = flags.DEFINE_enum(
  "protocol",
  "standard",
  ["standard", "pacgan", "aithal"],
  "standard: families and variants; pacgan: Lin et al.'s 2-D protocol; aithal: Aithal et "
  "al.'s toy diffusion protocol (1-D and 2-D mixtures, the variance filter).",
)
_QUICK = flags.DEFINE_bool(
  "quick",
  False,
  "A reduced run for CI (about 100 s on 2 cores); with --only, the quick budget on the settings named.",
)
_ONLY = flags.DEFINE_list(
  "only", [], "Keep settings whose dataset, name or dataset/name is listed."
)
_STEPS = flags.DEFINE_integer(
  "steps", None, "Training steps of every setting (default: the protocol's)."
)
_SEEDS = flags.DEFINE_integer(
  "seeds", None, "Seeds per setting (standard and aithal protocols; aithal's default 3)."
)
_SIZE_STEPS = flags.DEFINE_integer(
  "size_steps",
  None,
  "aithal protocol: training steps of the models of the training-points curve (default: --steps).",
)
_TRIALS = flags.DEFINE_integer("trials", None, "Trials per setting (pacgan protocol; default 10).")
_EVAL_EVERY = flags.DEFINE_integer(
  "eval_every", None, "pacgan protocol: steps between measurements (default 10,000)."
)
_PACK_SIZES = flags.DEFINE_list("pack_sizes", ["1", "2", "3", "4"], "pacgan protocol: pack sizes.")
_CONFIGS_DIR = flags.DEFINE_string(
  "configs_dir",
  os.path.join(_HERE, "configs"),
  "Folder whose digits28 configs define the variants.",
)
_DATA_DIR = flags.DEFINE_string(
  "data_dir", None, "tfds data_dir of the shapes classifier's training (default: tfds's)."
)
_OVERWRITE = flags.DEFINE_bool(
  "overwrite",
  False,
  "Replace the saved settings of --out that were made with other flags "
  "(steps, seeds, --quick, protocol...): they are moved to settings/replaced/<time>/, never "
  "deleted. Without it such a rerun is refused.",
)

_SAMPLES = flags.DEFINE_integer(
  "samples", None, "aithal protocol: samples per seed and measurement (default 10,000)."
)

_SIZES = flags.DEFINE_list(
  "sizes",
  None,
  "aithal protocol: training-set sizes of the training-points curve (default "
  "1000,5000,20000,100000; the paper's size is the steps curve's model).",
)

# Which protocol each budget flag belongs to: given to another one, it would do nothing.
_PROTOCOL_OF_FLAG = {
  "samples": ("aithal",),
  "sizes": ("aithal",),
  "seeds": ("standard", "aithal"),
  "trials": ("pacgan",),
  "eval_every": ("pacgan",),
  "pack_sizes": ("pacgan",),
  "size_steps": ("aithal",),
}


def _positive(name: str, what: str):
  flags.register_validator(
    name,
    lambda value: value is None or value >= 1,
    f"--{name} must be a positive number of {what}; leave it out for the protocol's default.",
  )


_positive("steps", "training steps")
_positive("seeds", "seeds")
_positive("trials", "trials")
_positive("eval_every", "steps between measurements")
_positive("size_steps", "training steps")
_positive("samples", "samples")
flags.register_validator(
  "sizes",
  lambda sizes: (
    sizes is None or (bool(sizes) and all(s.isdigit() and 1 <= int(s) <= 100_000 for s in sizes))
  ),
  "--sizes must be a comma-separated list of training-set sizes in 1 .. 100000, such as 1000,5000.",
)
flags.register_validator(
  "pack_sizes",
  lambda sizes: all(s.isdigit() and int(s) >= 1 for s in sizes) and bool(sizes),
  "--pack_sizes must be a comma-separated list of positive integers, such as 1,2,3,4.",
)


def check_flags() -> None:
  """Every user error of the flags, before jax starts (UserError: one line, exit 2)."""
  from aigc_jax.errors import UserError  # pylint: disable=import-outside-toplevel
  from aigc_jax.hallucination_benchmark import protocols  # pylint: disable=import-outside-toplevel

  for name, protocols_of_flag in _PROTOCOL_OF_FLAG.items():
    if flags.FLAGS[name].present and _PROTOCOL.value not in protocols_of_flag:
      hint = {
        "trials": "; the standard protocol's repetitions are --seeds",
        "seeds": "; the pacgan protocol's repetitions are --trials",
      }.get(name, "")
      raise UserError(
        f"--{name} applies to --protocol {' or '.join(protocols_of_flag)} only, and this run "
        f"is --protocol {_PROTOCOL.value}: leave it out{hint}."
      )
  from experiments import cli  # pylint: disable=import-outside-toplevel

  for problem in (
    cli.out_folder_problem(_OUT.value),
    cli.folder_flag_problem(
      "configs_dir", _CONFIGS_DIR.value, "an existing folder of config files", must_exist=True
    ),
    cli.folder_flag_problem("data_dir", _DATA_DIR.value, "a folder", must_exist=False),
  ):
    if problem:
      raise UserError(problem)
  if _PROTOCOL.value == "aithal":
    from aigc_jax.hallucination_benchmark import aithal  # pylint: disable=import-outside-toplevel

    unknown = [o for o in _ONLY.value if o not in aithal.DATASETS]
    if unknown:
      raise UserError(
        f"--only names {unknown[0]!r}, not a dataset of the aithal protocol; valid: "
        f"{', '.join(aithal.DATASETS)}."
      )
  elif _ONLY.value:
    datasets, names = protocols.setting_names(
      _PROTOCOL.value,
      _CONFIGS_DIR.value,
      quick=_QUICK.value,
      pack_sizes=[int(p) for p in _PACK_SIZES.value],
    )
    protocols.check_only(_ONLY.value, datasets, names, _PROTOCOL.value)


def main(argv):
  from experiments import cli  # pylint: disable=import-outside-toplevel

  cli.no_positional_arguments(argv)
  cli.run_reporting_user_errors(check_flags)
  cli.run_reporting_user_errors(run_interruptible)


def run_interruptible():
  """`run`, with Ctrl-C answered by what the folder holds: saved (75) or nothing (130)."""
  from aigc_jax.hallucination_benchmark import folder  # pylint: disable=import-outside-toplevel

  try:
    signals.start_raising()  # A Ctrl-C recorded during start-up is raised here.
    run()
  except KeyboardInterrupt:
    message, code = folder.interrupted(os.path.abspath(_OUT.value))
    signals.ignore()  # A second Ctrl-C must not cut this message short.
    print(message, file=sys.stderr)
    signals.exit_now(code)


def run():
  # Imported after flag parsing, so jax starts with the final XLA_FLAGS.
  from aigc_jax.hallucination_benchmark import protocols, runner  # pylint: disable=import-outside-toplevel
  from experiments.configs import classifier_shapes, hallucination_bases  # pylint: disable=import-outside-toplevel

  get_base = lambda dataset, family: hallucination_bases.get_config(f"{dataset},{family}")
  if _PROTOCOL.value == "aithal":
    run_aithal()
    return
  if _PROTOCOL.value == "pacgan":
    plan = protocols.pacgan_plan(
      hallucination_bases.pacgan_config,
      steps=_STEPS.value,
      trials=_TRIALS.value,
      eval_every=_EVAL_EVERY.value,
      pack_sizes=[int(p) for p in _PACK_SIZES.value],
      only=_ONLY.value,
      quick=_QUICK.value,
    )
  else:
    plan = protocols.standard_plan(
      _CONFIGS_DIR.value,
      get_base,
      quick=_QUICK.value,
      steps=_STEPS.value,
      seeds=_SEEDS.value,
      only=_ONLY.value,
    )
  classifier = classifier_shapes.get_config()
  if _QUICK.value:
    classifier.train.num_steps = protocols.QUICK_CLASSIFIER_STEPS
    classifier.train.eval_every = classifier.checkpoint.save_every = (
      protocols.QUICK_CLASSIFIER_STEPS
    )
  runner.run_plan(
    plan, _OUT.value, classifier, data_dir=_DATA_DIR.value, overwrite=_OVERWRITE.value
  )
  print(
    f"Results in {os.path.abspath(_OUT.value)}: results.csv, results.md, results.json, "
    "calibration.csv, figures/"
  )


def run_aithal():
  from aigc_jax.hallucination_benchmark import aithal  # pylint: disable=import-outside-toplevel
  from experiments.configs import aithal_toy  # pylint: disable=import-outside-toplevel

  plan = aithal.make_plan(
    quick=_QUICK.value,
    steps=_STEPS.value,
    size_steps=_SIZE_STEPS.value,
    seeds=_SEEDS.value,
    num_samples=_SAMPLES.value,
    sizes=None if _SIZES.value is None else [int(n) for n in _SIZES.value],
    only=_ONLY.value,
  )
  out = os.path.abspath(_OUT.value)
  command = "python -m experiments.hallucination_benchmark " + " ".join(sys.argv[1:])
  aithal.run_plan(plan, out, aithal_toy.get_config, overwrite=_OVERWRITE.value, command=command)
  paths = aithal.write_outputs(out)
  print(f"Results in {out}: " + ", ".join(os.path.relpath(p, out) for p in paths))


if __name__ == "__main__":
  from experiments import cli as _cli

  app.run(main, flags_parser=_cli.parse_flags)  # Flag errors in one line; library logs quiet.
