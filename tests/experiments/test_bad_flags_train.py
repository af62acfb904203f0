"""`experiments.train` against a table of bad flags and config files, as a careless user types
them: each is exit 2 and exactly one stderr line `error: ...` saying what is wrong, before jax
starts (a second or so each) and before anything is written."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Config files written into the test's folder: {name} in the table is replaced by their path.
CONFIG_FILES = {
  "syntax_error.py": "def get_config(:\n  pass\n",
  "returns_dict.py": "def get_config():\n  return {'train': {'num_steps': 3}}\n",
  "returns_none.py": "def get_config():\n  config = 1\n",
  "no_train.py": (
    "from experiments.configs import base\n\n"
    "def get_config():\n  config = base.get_base_config()\n"
    "  del config['train']\n  return config\n"
  ),
  "bare.py": (
    "import ml_collections\n\n"
    "def get_config():\n  config = ml_collections.ConfigDict()\n"
    "  config.seed = 0\n  return config\n"
  ),
  "raises.py": "def get_config():\n  return {}['model']\n",
  "imports_missing.py": "import my_missing_helpers\n\ndef get_config():\n  pass\n",
  "broken.json": '{"seed": 0, "model": tru',
  "list.json": "[1, 2]",
  "notes.txt": "seed = 0\n",
}


@pytest.mark.parametrize(
  "args,expected",
  [
    # Config files that give no usable config.
    (
      ["--config={syntax_error.py}"],
      "The config file {syntax_error.py} does not load: syntax "
      "error at line 1 of {syntax_error.py}: ",
    ),
    (
      ["--config={returns_dict.py}"],
      "get_config() of {returns_dict.py} returned dict, not an "
      "ml_collections.ConfigDict; start from the base config (config = base.get_base_config() "
      "of experiments/configs/base.py) and return it.",
    ),
    (["--config={returns_none.py}"], "get_config() of {returns_none.py} returned None, "),
    (
      ["--config={no_train.py}", "--config.train.num_steps=3"],
      "The config from {no_train.py} lacks the key train: a config must start from "
      "experiments/configs/base.py (config = base.get_base_config(), then change what differs).",
    ),
    (
      ["--config={bare.py}"],
      "The config from {bare.py} lacks the keys checkpoint, dataset, "
      "model, optimizer, train: a config must start from experiments/configs/base.py",
    ),
    (
      ["--config={raises.py}"],
      "get_config() of {raises.py} failed: KeyError: 'model' at line 2 of {raises.py}.",
    ),
    (
      ["--config={imports_missing.py}"],
      "The config file {imports_missing.py} does not load: "
      "ModuleNotFoundError: No module named 'my_missing_helpers' at line 1 of ",
    ),
    (["--config={broken.json}"], "The config {broken.json} is not valid JSON (line 1, column "),
    (
      ["--config={list.json}"],
      "The config {list.json} holds a JSON list, not the object of a run's config.json.",
    ),
    (
      ["--config={list.json}:abc"],
      "--config {list.json}:abc: a run's config.json takes no ':abc'.",
    ),
    (
      ["--config={notes.txt}"],
      "--config {notes.txt} is neither a config file (.py) nor a run's config.json.",
    ),
    (
      ["--config=experiments/configs/pacgan_ring8.py:abc"],
      "get_config('abc') of experiments/configs/pacgan_ring8.py failed: ValueError: invalid "
      "literal for int() with base 10: 'abc' at line ",
    ),
    (
      ["--config=experiments/configs/vae_digits.py:abc"],
      "The config file experiments/configs/vae_digits.py takes no ':abc' (its get_config() has "
      "no argument).",
    ),
    (
      ["--config=experiments/configs/nope.py"],
      "The config file experiments/configs/nope.py does not exist; pass "
      "experiments/configs/<name>.py with <name> one of: ",
    ),
    # Values and keys.
    (["--config.seed=-1"], "Invalid config value: seed is -1 (allowed: an integer in [0, "),
    (
      ["--config.train.num_steps=0"],
      "Invalid config value: train.num_steps is 0 (allowed: an integer >= 1).",
    ),
    (["--config.train.batch_size=abc"], "flag --config.train.batch_size=abc: invalid literal "),
    (["--config.train=3"], "flag --config.train=3: "),
    (["--config.model.famly=vae"], "Unknown config key 'famly' (did you mean 'family'?)"),
    (
      ["--config.dataset.data_dir=/nonexistent-aigc-jax"],
      "Invalid config value: "
      "dataset.data_dir is '/nonexistent-aigc-jax' (allowed: an existing directory",
    ),
    # The command's own flags.
    (["--workdir="], "--workdir is empty; "),
    (
      ["{without --workdir}"],
      "flag --workdir=None: Flag --workdir must have a value other than None.",
    ),
    (["--fresh=maybe"], "flag --fresh=maybe: "),
    (["--nonexistent_flag=1"], "Unknown command line flag 'nonexistent_flag'"),
    (["--heartbeat_timeout=abc"], "flag --heartbeat_timeout=abc: invalid literal "),
    (["--num_processes=0"], "--num_processes is 0; it must be at least 1."),
    (["positional"], "Unexpected arguments: positional "),
  ],
  ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_flag_is_one_line_and_exit_2(tmp_path, args, expected):
  paths = {}
  for name, text in CONFIG_FILES.items():
    paths[name] = str(tmp_path / name)
    (tmp_path / name).write_text(text)

  def fill(text):
    for name, path in paths.items():
      text = text.replace("{" + name + "}", path)
    return text

  workdir = tmp_path / "run"
  command = [
    sys.executable,
    "-m",
    "experiments.train",
    *[fill(a) for a in args if a != "{without --workdir}"],
  ]
  if not any(a.startswith(("--workdir", "{without --workdir}")) for a in args):
    command += ["--workdir", str(workdir)]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2, result.stderr[-3000:]
  (line,) = result.stderr.splitlines()
  assert line.startswith("error: " + fill(expected)), line
  assert not workdir.exists()
