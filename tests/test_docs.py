"""Every command shown in README.md and docs/*.md names real things, and every link leads
somewhere.

A command is a `python -m <module> ...` line (also `python3`, `.venv/bin/python`) in a fenced
bash block or an inline code span. Checked: the module exists; for the project's own modules
every `--flag` is one the module defines (read once per module from `--helpfull`, or `--help`
for an argparse script), every `--config FILE[:arg]` names a file that exists, and every
`--config.a.b=value` names a key of that config (loaded by `experiments.config_files`, as the
CLI loads it; without `--config`, the module's default). Every `experiments/configs/*.py`
named exists, every `pip install -e '.[extra]'` names an extra of setup.cfg, and every
relative link `[text](path#anchor)` points to a file (and a heading of it).

A doc may show a file the reader creates: a ```python block whose preceding line ends with
"`path`:" defines `path` for that doc's commands (docs/adding_a_variant.md's config).
"""

import configparser
import functools
import glob
import os
import re
import shlex
import subprocess
import sys
from typing import Dict, FrozenSet, List, Tuple

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md"] + sorted(
  os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md"))
)
_PROJECT = ("aigc_jax", "experiments", "benchmarks")

_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.M | re.S)
_PYTHON_M = re.compile(r"(?:^|[\s\"'`])(?:\S*/)?python3?\s+-m\s+([\w.]+)")
_CONFIG_PATH = re.compile(r"experiments/configs/\w+\.py")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_EXTRAS = re.compile(r"pip install[^\n]*?-e\s+'\.\[([\w,]+)\]'")
_FLAG_LINE = re.compile(r"^\s+(?:-(\w|\?),\s?)?--(\[no\])?([\w.-]+)", re.M)


def _blocks(text: str) -> List[Tuple[str, str, str]]:
  """Fenced blocks of `text` as (language, body, the last non-empty line before it)."""
  blocks = []
  for match in _FENCE.finditer(text):
    before = [line for line in text[: match.start()].splitlines() if line.strip()]
    blocks.append((match.group(1).split(" ")[0], match.group(2), before[-1] if before else ""))
  return blocks


def _prose(text: str) -> str:
  """`text` without its fenced blocks (their `# comments` are not headings, nor links)."""
  return _FENCE.sub("", text)


def _command_lines(text: str) -> List[str]:
  """Shell lines of the bash blocks (continuations joined) and inline `python -m` spans."""
  lines = []
  for language, body, _ in _blocks(text):
    if language in ("bash", "sh", "shell"):
      lines += body.replace("\\\n", " ").splitlines()
  lines += re.findall(r"`([^`\n]*python3? -m [^`\n]*)`", _prose(text))
  return lines


def _commands(text: str) -> List[Tuple[str, List[str]]]:
  """(module, argument tokens) of every `python -m module ...` in `text`'s commands."""
  commands = []
  for line in _command_lines(text):
    for match in _PYTHON_M.finditer(line):
      rest = re.split(r"&&|;|\||\"", line[match.end() :])[0]  # This command's own arguments.
      commands.append((match.group(1), shlex.split(rest, comments=True)))
  return commands


def _created_files(text: str) -> Dict[str, str]:
  """Files a doc shows the reader creating: path -> the python block's source."""
  created = {}
  for language, body, before in _blocks(text):
    named = re.search(r"`([\w./-]+\.py)`:\s*$", before)
    if language == "python" and named:
      created[named.group(1)] = body
  return created


@functools.lru_cache(maxsize=None)
def _help(module: str) -> str:
  """The module's full help: absl's `--helpfull`, else argparse's `--help`."""
  for flag in ("--helpfull", "--help"):
    result = subprocess.run(
      [sys.executable, "-m", module, flag], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    if result.returncode == 0:
      return result.stdout
  raise AssertionError(f"python -m {module} prints no help: {result.stderr[-2000:]}")


@functools.lru_cache(maxsize=None)
def _flags(module: str) -> FrozenSet[str]:
  """The flag names `module` defines (absl booleans also as no<name>), short forms too."""
  names = set()
  for short, negatable, name in _FLAG_LINE.findall(_help(module)):
    names.add(name)
    if negatable:
      names.add("no" + name)
    if short:
      names.add(short)
  return frozenset(names)


def _default_config(module: str):
  match = re.search(r"^\s+--config: (?:.*\n)*?\s+\(default: '([^']*)'\)", _help(module), re.M)
  return match.group(1) if match else None


def _is_project_module(module: str) -> bool:
  return module.split(".")[0] in _PROJECT


def _module_exists(module: str) -> bool:
  import importlib.util  # pylint: disable=import-outside-toplevel

  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:  # A missing parent package.
    return False


@functools.lru_cache(maxsize=None)
def _extras() -> FrozenSet[str]:
  parser = configparser.ConfigParser()
  parser.read(os.path.join(REPO, "setup.cfg"))
  return frozenset(parser["options.extras_require"])


def _load_config(spec: str, created: Dict[str, str], tmp_dir: str):
  """The config `spec` names (a created file is written to `tmp_dir` first)."""
  from experiments import config_files  # pylint: disable=import-outside-toplevel
  from experiments.configs import base  # pylint: disable=import-outside-toplevel

  path, colon, argument = spec.partition(":")
  if path.endswith(".json"):  # A run's saved config: it has base's keys.
    return base.get_config()
  if path in created:
    os.makedirs(tmp_dir, exist_ok=True)
    written = os.path.join(tmp_dir, os.path.basename(path))
    with open(written, "w", encoding="utf-8") as f:
      f.write(created[path])
    path = written
  return config_files.load(path + colon + argument)


def _missing_key(config, key: str):
  """The first part of dotted `key` that `config` does not have, or None."""
  node = config
  for part in key.split("."):
    if not hasattr(node, "keys") or part not in node:
      return part
    node = node[part]
  return None


def _command_problems(
  module: str, tokens: List[str], created: Dict[str, str], tmp_dir: str
) -> List[str]:
  shown = f"python -m {module} {' '.join(tokens)}".strip()
  if not _module_exists(module):
    return [f"{shown}: no module {module}"]
  if not _is_project_module(module):
    return []  # pytest, venv, pip: their flags are theirs.
  problems, config_spec, keys = [], _default_config(module), []
  for index, token in enumerate(tokens):
    if not token.startswith("-") or token == "-":
      continue
    name, _, value = token.lstrip("-").partition("=")
    if name == "config":
      config_spec = value or (tokens[index + 1] if index + 1 < len(tokens) else "")
      path = config_spec.partition(":")[0]
      if not (
        path.endswith(".json") or path in created or os.path.isfile(os.path.join(REPO, path))
      ):
        problems.append(f"{shown}: --config {path} does not exist")
        config_spec = None
    elif name.startswith("config."):
      keys.append(name[len("config.") :])
    elif name not in _flags(module):
      problems.append(f"{shown}: {module} has no flag --{name}")
  if keys and config_spec:
    config = _load_config(config_spec, created, tmp_dir)
    for key in keys:
      part = _missing_key(config, key)
      if part is not None:
        problems.append(f"{shown}: the config {config_spec} has no key {key} ({part!r})")
  return problems


def problems(text: str, doc: str, tmp_dir: str) -> List[str]:
  """Everything in the markdown `text` of the file `doc` (repo-relative) that names nothing."""
  created = _created_files(text)
  found = []
  for module, tokens in _commands(text):
    found += _command_problems(module, tokens, created, tmp_dir)
  for path in sorted(set(_CONFIG_PATH.findall(text))):
    if path not in created and not os.path.isfile(os.path.join(REPO, path)):
      found.append(f"{path} does not exist")
  for line in _command_lines(text):
    for extras in _EXTRAS.findall(line):
      found += [
        f"{line.strip()}: setup.cfg has no extra {extra!r}"
        for extra in extras.split(",")
        if extra not in _extras()
      ]
  for target in _LINK.findall(_prose(text)):
    found += _link_problems(target, doc)
  return found


def _slug(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
  return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: str) -> FrozenSet[str]:
  with open(path, encoding="utf-8") as f:
    headings = re.findall(r"^#+ (.+)$", _prose(f.read()), re.M)
  return frozenset(_slug(h) for h in headings)


def _link_problems(target: str, doc: str) -> List[str]:
  if re.match(r"\w+:", target):  # http:, https:, mailto:
    return []
  path, _, anchor = target.partition("#")
  here = os.path.join(REPO, os.path.dirname(doc))
  resolved = os.path.normpath(os.path.join(here, path)) if path else os.path.join(REPO, doc)
  if not os.path.exists(resolved):
    return [f"{doc}: the link ({target}) leads to no file"]
  if anchor and resolved.endswith(".md") and anchor not in _anchors(resolved):
    return [f"{doc}: the link ({target}) names no heading of {os.path.relpath(resolved, REPO)}"]
  return []


def _read(doc: str) -> str:
  with open(os.path.join(REPO, doc), encoding="utf-8") as f:
    return f.read()


@pytest.mark.parametrize("doc", DOCS)
def test_every_command_and_link_names_something_real(doc, tmp_path):
  assert problems(_read(doc), doc, str(tmp_path)) == []


def test_the_docs_show_commands_of_every_entry_point():
  """The parser finds the commands (a parser that finds none would pass everything)."""
  shown = {module for doc in DOCS for module, _ in _commands(_read(doc))}
  assert {
    "experiments.train",
    "experiments.evaluate",
    "experiments.hallucination_benchmark",
    "experiments.digits28_variants",
    "benchmarks.run",
    "benchmarks.profile_step",
    "benchmarks.default_job",
    "benchmarks.checkpoint_overhead",
  } <= shown


def test_the_readme_keeps_ci_s_test_command():
  """`.ci/run` runs the README's test command verbatim."""
  with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
    ci_command = f.read().strip().splitlines()[-1]
  assert ci_command in _read("README.md").splitlines()


_PLANTED = """\
A [good link](training.md#exit-codes), a [bad one](no_such_page.md), a [bad anchor](training.md#no-such-heading).

```bash
python -m experiments.train --workdir runs/x --num_step=3
python -m experiments.train --workdir runs/x --config.train.num_stepz=3
python -m experiments.train --config experiments/configs/no_such_config.py --workdir runs/x
python -m experiments.trian --workdir runs/x
.venv/bin/python -m benchmarks.run --quik \\
    --cores=1
.venv/bin/python -m benchmarks.default_job --round=3
.venv/bin/pip install -e '.[cuda14]'
python -m experiments.train --config experiments/configs/pacgan_ring8.py:2 --workdir runs/x --config.train.num_steps=3 --nofresh -v 1
```

and its config, `experiments/configs/my_new.py`:

```python
from experiments.configs import ae_digits

def get_config():
  return ae_digits.get_config()
```

```bash
python -m experiments.train --config experiments/configs/my_new.py --workdir r --config.model.likelihood=x --config.model.nope=1
```
"""


def test_the_checker_catches_planted_mistakes(tmp_path):
  found = problems(_PLANTED, "docs/planted.md", str(tmp_path))
  expected = [
    "experiments.train has no flag --num_step",
    "has no key train.num_stepz ('num_stepz')",
    "--config experiments/configs/no_such_config.py does not exist",
    "no module experiments.trian",
    "benchmarks.run has no flag --quik",
    "benchmarks.default_job has no flag --round",
    "setup.cfg has no extra 'cuda14'",
    "has no key model.nope",  # The created config: only its bad key, not the file.
    "experiments/configs/no_such_config.py does not exist",
    "the link (no_such_page.md) leads to no file",
    "the link (training.md#no-such-heading) names no heading",
  ]
  for fragment in expected:
    assert any(fragment in line for line in found), (fragment, found)
  assert len(found) == len(expected), found  # The good lines are not flagged.
