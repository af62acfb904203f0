"""The evaluation runner on trained digits runs: what it writes agrees with direct computation;
reports with other settings are kept apart; what can be checked is checked before the work."""

import json
import os
import subprocess
import sys
import types

from matplotlib.backends.backend_agg import FigureCanvasAgg
import numpy as np
import pytest
from PIL import Image

from aigc_jax import data, inference, training
from aigc_jax.errors import ConfigError, WorkdirError
from aigc_jax.evaluation import fidelity, report
from aigc_jax.evaluation import reference as reference_lib
from aigc_jax.image_grid import save_side_by_side
from tests import filesystems
from tests.training import classifier_run, helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_SAMPLES = 300


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
  return classifier_run.trained_digits_classifier(tmp_path_factory)


_RUNS = {}


def _train(family, body, tmp_path_factory, data_dir):
  """The workdir of a 30-step run of `family`, trained once per session (reports only add
  folders under its eval/)."""
  if (family, body) not in _RUNS:
    config = helpers.tiny_config(family, body)
    config.dataset.data_dir = data_dir
    config.train.num_steps = 30
    config.train.eval_every = 0
    config.train.sample_every = 0
    workdir = str(tmp_path_factory.mktemp(family))
    training.train_and_evaluate(config, workdir)
    _RUNS[family, body] = workdir
  return _RUNS[family, body]


@pytest.mark.parametrize("family,body", [("vae", "mlp"), ("ae", "conv"), ("gan", "conv")])
def test_report_matches_direct_computation(tmp_path_factory, classifier, family, body):
  workdir = _train(family, body, tmp_path_factory, classifier["data_dir"])
  results = report.evaluate_run(
    workdir,
    classifier_workdir=classifier["workdir"],
    num_samples=NUM_SAMPLES,
    data_dir=classifier["data_dir"],
  )
  with open(os.path.join(results["output_dir"], "eval.json")) as f:
    on_disk = json.load(f)
  assert on_disk["step"] == 30 and on_disk["num_test_images"] == 300
  assert on_disk["classifier"]["test_accuracy"] > 0.9
  with open(os.path.join(results["output_dir"], "eval.md")) as f:
    table = f.read()
  assert f"Settings: num_samples {NUM_SAMPLES}, seed 0, " in table

  _, fam, state, _ = inference.load_for_inference(workdir)
  images, _ = data.load_split_images("digits28", "test", classifier["data_dir"])
  if fam.reconstruct is not None:
    recon = np.asarray(fam.reconstruct(state, images, None))
    direct_mse = np.mean((recon - images) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(on_disk["fidelity"]["mse"]["mean"], direct_mse.mean(), rtol=1e-4)
    assert 0 < on_disk["fidelity"]["ssim"]["mean"] <= 1
    assert on_disk["fidelity"]["ms_ssim"]["settings"] == {"filter_size": 7, "num_scales": 3}
    flip = on_disk["reconstruction"]["reconstruction_class_flip_rate"]
    assert flip["n"] == 300 and flip["ci_low"] <= flip["rate"] <= flip["ci_high"]
    assert "| mse |" in table and "| reconstruction_class_flip_rate |" in table
    # One name per number: training's VAE value decodes a sampled code, not the posterior
    # mean that the report's `mse` decodes (0.0067 against 0.0039 on one run), so it is
    # `mse_sampled_code`; the AE's training value is the report's quantity and keeps `mse`.
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      logged = set().union(*(json.loads(line) for line in f))
    assert (
      ("mse_sampled_code" in logged and "mse" not in logged)
      if family == "vae"
      else ("mse" in logged and "mse_sampled_code" not in logged)
    )
  else:
    assert "fidelity" not in on_disk
  if fam.generate is not None:
    generation = on_disk["generation"]
    manifold = generation["manifold_hallucination_rate"]
    assert manifold["n"] == NUM_SAMPLES == generation["num_samples"]
    assert manifold["count"] == round(manifold["rate"] * NUM_SAMPLES)
    # Outside the real manifold is exactly "not counted by precision".
    np.testing.assert_allclose(manifold["rate"], 1 - generation["precision"], atol=1e-6)
    assert manifold["ci_low"] <= manifold["rate"] <= manifold["ci_high"]
    assert generation["fid"] > 0 and 0 <= generation["coverage"] <= 1
    assert os.path.exists(os.path.join(results["output_dir"], "hallucinated.png"))
    assert "| manifold_hallucination_rate |" in table
  else:
    assert "generation" not in on_disk
  if family == "vae":
    # Other settings write another report; the first one stays as it was.
    other = report.evaluate_run(
      workdir,
      classifier_workdir=classifier["workdir"],
      num_samples=200,
      seed=1,
      data_dir=classifier["data_dir"],
    )
    assert os.path.dirname(other["output_dir"]) == os.path.dirname(results["output_dir"])
    assert os.path.basename(other["output_dir"]).startswith("samples_200_seed_1_")
    assert os.path.basename(results["output_dir"]).startswith(f"samples_{NUM_SAMPLES}_seed_0_")
    with open(os.path.join(results["output_dir"], "eval.json")) as f:
      assert json.load(f) == on_disk
    with open(os.path.join(other["output_dir"], "settings.json")) as f:
      assert json.load(f)["num_samples"] == 200


def test_cli_prints_the_table(tmp_path_factory, classifier):
  workdir = _train("vae", "mlp", tmp_path_factory, classifier["data_dir"])
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.evaluate",
      "--workdir",
      workdir,
      "--classifier_workdir",
      classifier["workdir"],
      "--num_samples=200",
      "--data_dir",
      classifier["data_dir"],
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "| manifold_hallucination_rate |" in result.stdout
  assert "Settings: num_samples 200, seed 0, " in result.stdout
  (report_dir,) = [
    d
    for d in os.listdir(os.path.join(workdir, "eval", "step_30"))
    if d.startswith("samples_200_seed_0_")
  ]
  assert os.path.exists(os.path.join(workdir, "eval", "step_30", report_dir, "eval.json"))
  # Library logs stay quiet: no absl INFO lines, no "Given directory is read only".
  assert not [l for l in result.stderr.splitlines() if l[:1] in "IW" and l[1:5].isdigit()]
  assert "read only" not in result.stderr
  # stderr is not a terminal here: no progress bar, so no carriage returns, cursor escapes or
  # blank lines.
  assert "\r" not in result.stderr and "\x1b[" not in result.stderr, result.stderr[-500:]
  assert "" not in result.stderr.splitlines()


def test_missing_classifier_is_one_line(tmp_path, tmp_path_factory, classifier):
  workdir = _train("vae", "mlp", tmp_path_factory, classifier["data_dir"])
  with pytest.raises(ConfigError) as info:
    report.evaluate_run(workdir, classifier_workdir=str(tmp_path / "nothing"))
  message = str(info.value)
  assert "\n" not in message and "train the digits28 classifier (model.family" in message


class _HalfwayFamily:
  """Reconstructs each image as its mean with 0.5 (no model: the fidelity code is the test)."""

  conditional = False

  @staticmethod
  def reconstruct(state, images, key):
    del state, key
    return 0.5 * (images + 0.5)


@pytest.mark.parametrize("side", [8, 28])
def test_fidelity_of_small_images_uses_windows_that_fit_and_says_so(side):
  """8x8 digits crashed in SSIM's 11-tap window; now SSIM takes a 7-tap window and MS-SSIM
  (one scale would be SSIM again) is skipped, each with a note in the report."""
  rng = np.random.default_rng(0)
  images = rng.random((6, side, side, 1)).astype(np.float32)
  reference = types.SimpleNamespace(
    held_out=images,
    held_out_labels=np.zeros(6, np.int32),
    floors={},
    spec=types.SimpleNamespace(kind="image", reconstruction_check=None),
    extractor=types.SimpleNamespace(has_class_oracle=False),
  )
  fidelity_results, _, notes = report._reconstruction(  # pylint: disable=protected-access
    _HalfwayFamily, None, reference, None, batch_size=4
  )
  outputs = _HalfwayFamily.reconstruct(None, images, None)
  if side == 8:
    assert fidelity_results["ssim"]["settings"] == {"filter_size": 7}
    np.testing.assert_allclose(
      fidelity_results["ssim"]["mean"],
      np.mean(fidelity.ssim(images, outputs, filter_size=7)),
      rtol=1e-5,
    )
    assert "ms_ssim" not in fidelity_results
    assert notes == [
      "ssim uses a 7-tap Gaussian window: the standard 11 taps do not fit 8x8 images.",
      "ms_ssim skipped: at 8x8 only one scale fits, which is ssim.",
    ]
  else:
    assert fidelity_results["ssim"]["settings"] == {"filter_size": 11}
    assert fidelity_results["ms_ssim"]["settings"] == {"filter_size": 7, "num_scales": 3}
    assert notes == [
      "ms_ssim uses 3 scales of a 7-tap window (the standard 5 scales of 11 "
      "taps need 176 pixels), weights renormalised."
    ]
  table = report._markdown(
    {  # pylint: disable=protected-access
      "settings": {"num_samples": 1, "seed": 0, "batch_size": 4, "classifier_workdir": None},
      "family": "vae",
      "dataset": "digits",
      "workdir": "w",
      "step": 1,
      "reference": {"n": 1, "of": 1, "split": "train"},
      "held_out": {"n": 6, "split": "test"},
      "fidelity": fidelity_results,
      "notes": notes,
    }
  )
  assert table.endswith("\nNotes:\n" + "".join(f"- {n}\n" for n in notes))


def test_image_fidelity_plan_skips_what_cannot_apply():
  assert report.image_fidelity_plan(256, 256) == (
    {"filter_size": 11},
    {"filter_size": 11, "num_scales": 5},
    [],
  )
  assert report.image_fidelity_plan(2, 2) == (
    None,
    None,
    ["ssim and ms_ssim skipped: 2x2 images are too small for any SSIM window."],
  )
  assert report.ssim_settings(5, 9) == {"filter_size": 5}
  assert report.ssim_settings(6, 6) == {"filter_size": 5}


def test_missing_classifier_message_names_the_real_config_file(
  tmp_path, tmp_path_factory, classifier
):
  """The CLI names the config file that trains the dataset's classifier (it said
  `classifier_<dataset>.py`), or says none exists and which do."""
  workdir = _train("vae", "mlp", tmp_path_factory, classifier["data_dir"])
  missing = str(tmp_path / "nothing")
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.evaluate",
      "--workdir",
      workdir,
      "--classifier_workdir",
      missing,
      "--data_dir",
      classifier["data_dir"],
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2
  (line,) = result.stderr.strip().splitlines()
  assert line == (
    f"error: No classifier checkpoints in {missing}; train the digits28 "
    "classifier first: python -m experiments.train --config "
    f"experiments/configs/classifier_digits.py --workdir {missing}"
  ), line
  configs = {
    "digits28": "experiments/configs/classifier_digits.py",
    "mnist": "experiments/configs/classifier_mnist.py",
  }
  unknown = report.missing_classifier_message("digits", "runs/classifier_digits", configs)
  assert unknown == (
    "No classifier checkpoints in runs/classifier_digits, and no classifier config exists "
    "for dataset 'digits' (there are: classifier_digits.py (digits28), classifier_mnist.py "
    "(mnist)); train one on digits first, e.g. python -m experiments.train --config "
    "experiments/configs/classifier_digits.py --config.dataset.name=digits --workdir "
    "runs/classifier_digits"
  )


def test_a_classifier_run_is_refused_in_one_line_and_nothing_is_written(classifier):
  before = sorted(os.listdir(classifier["workdir"]))
  with pytest.raises(ConfigError) as info:  # The library, with or without config.json.
    report.evaluate_run(classifier["workdir"], num_samples=200, data_dir=classifier["data_dir"])
  assert "\n" not in str(info.value) and "evaluates generative models only" in str(info.value)
  result = subprocess.run(
    [sys.executable, "-m", "experiments.evaluate", "--workdir", classifier["workdir"]],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 2
  (line,) = result.stderr.strip().splitlines()
  assert line == (
    f"error: --workdir {classifier['workdir']} is a classifier run; "
    "experiments.evaluate evaluates generative models only (ae, vae, gan). A "
    "classifier run serves as --classifier_workdir."
  )
  assert sorted(os.listdir(classifier["workdir"])) == before  # No eval/ folder.


def test_ms_ssim_settings_fit_the_image():
  assert report.ms_ssim_settings(256, 256) == {"filter_size": 11, "num_scales": 5}
  assert report.ms_ssim_settings(28, 28) == {"filter_size": 7, "num_scales": 3}
  assert report.ms_ssim_settings(8, 8) == {"filter_size": 7, "num_scales": 1}
  assert report.ms_ssim_settings(32, 32) == {"filter_size": 7, "num_scales": 3}


@pytest.fixture
def no_sampling(monkeypatch):
  """Fails the test if the runner starts sampling: the checks must come before the work."""

  def forbidden(*args, **kwargs):
    raise AssertionError("sampling started before the check")

  monkeypatch.setattr(report.sampling, "generate", forbidden)
  monkeypatch.setattr(report, "_reconstruction", forbidden)


@pytest.mark.parametrize("num_samples", [0, -3])
def test_nonpositive_num_samples_is_refused_at_once(num_samples, no_sampling):
  with pytest.raises(
    ConfigError,
    match=rf"^num_samples is {num_samples} \(allowed: an "
    r"integer >= 1\)",
  ):
    report.evaluate_run("no-such-workdir", num_samples=num_samples)


def test_too_few_samples_are_refused_with_the_minimum(tmp_path_factory, classifier, no_sampling):
  workdir = _train("vae", "mlp", tmp_path_factory, classifier["data_dir"])
  for num_samples in (1, 5, 128):
    with pytest.raises(ConfigError) as info:
      report.evaluate_run(
        workdir,
        classifier_workdir=classifier["workdir"],
        num_samples=num_samples,
        data_dir=classifier["data_dir"],
      )
    message = str(info.value)
    assert "\n" not in message and message.endswith("pass --num_samples >= 129.")
    assert (
      f"num_samples is {num_samples}, too few for the sample metrics: the k-NN metrics "
      "need more than k = 5 samples and FID more than the feature width 128"
    ) in message
  assert report.minimum_num_samples(2) == 6  # Below 5 features, k-NN's k decides.


def test_unwritable_eval_folder_is_refused_before_the_work(
  tmp_path, tmp_path_factory, classifier, no_sampling
):
  workdir = _train("vae", "mlp", tmp_path_factory, classifier["data_dir"])
  (tmp_path / "file").write_text("")  # A file where the reports would go.
  with pytest.raises(WorkdirError) as info:
    report.evaluate_run(
      workdir,
      classifier_workdir=classifier["workdir"],
      data_dir=classifier["data_dir"],
      eval_dir=str(tmp_path / "file" / "eval"),
    )
  assert "\n" not in str(info.value)
  assert f"Cannot write to {tmp_path}/file/eval (Not a directory)" in str(info.value)


def test_read_only_workdir_is_read_and_refused_before_the_work(
  small_filesystem, classifier, no_sampling
):
  config = helpers.tiny_config("vae")
  config.dataset.data_dir = classifier["data_dir"]
  config.train.num_steps = 2
  config.train.eval_every = config.train.sample_every = 0
  workdir = str(small_filesystem / "run")
  training.train_and_evaluate(config, workdir)
  filesystems.make_read_only(small_filesystem)
  with pytest.raises(WorkdirError) as info:  # The checkpoint was read; the report cannot go there.
    report.evaluate_run(
      workdir, classifier_workdir=classifier["workdir"], data_dir=classifier["data_dir"]
    )
  message = str(info.value)
  assert "\n" not in message and message.startswith(
    f"Cannot write to {workdir}/eval (Read-only file system); choose a writable --eval_dir"
  )


def test_cli_refuses_a_bad_num_samples_in_one_line(tmp_path):
  result = subprocess.run(
    [sys.executable, "-m", "experiments.evaluate", "--workdir", str(tmp_path), "--num_samples=0"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 2
  (line,) = result.stderr.strip().splitlines()
  assert line == "error: flag --num_samples=0: 0 is not a positive integer", line


def test_hallucination_figure_panels_are_titled_with_their_counts(tmp_path):
  rng = np.random.default_rng(0)
  samples = rng.random((10, 28, 28, 1)).astype(np.float32)
  flags = np.array([True] * 3 + [False] * 7)
  assert report.hallucination_figure_titles(flags) == [
    "flagged (off the manifold): 3 of 10, 3 shown",
    "not flagged: 7 of 10, 7 shown",
  ]
  titled = np.asarray(
    Image.open(report.save_hallucination_figure(str(tmp_path / "titled.png"), samples, flags))
  )
  plain = np.asarray(
    Image.open(
      save_side_by_side(str(tmp_path / "plain.png"), [samples[flags], samples[~flags]], upscale=2)
    )
  )
  strip = titled.shape[0] - plain.shape[0]
  assert strip >= 10 and titled.shape[1] == plain.shape[1]
  np.testing.assert_array_equal(titled[strip:], plain)  # The panels themselves are unchanged.
  left, right = titled[:strip, : plain.shape[1] // 2], titled[:strip, plain.shape[1] // 2 :]
  assert (left < 128).sum() > 20 and (right < 128).sum() > 20  # Text above each panel.


def test_2d_hallucination_figure_is_two_panels_on_the_same_axes_with_the_modes(tmp_path):
  """Points: two framed panels of the same limits, with ticks, every sample of its side, the
  true modes as crosses in both, titles that do not overlap and a legend; 900 x 450 pixels."""
  modes = data.get_dataset_spec("gaussian_ring8").mixture.means
  rng = np.random.default_rng(0)
  samples = np.concatenate(
    [modes[rng.integers(0, 8, 90)] + 0.01 * rng.normal(size=(90, 2)), rng.uniform(-2, 2, (10, 2))]
  )
  flags = np.arange(100) >= 90
  meaning = "outside the known support"  # The longer title.
  figure = report.hallucination_points_figure(samples, flags, meaning, modes)
  left, right = figure.axes
  assert left.get_xlim() == right.get_xlim() == left.get_ylim() == right.get_ylim()
  low, high = left.get_xlim()
  assert low == -high and high >= np.abs(samples).max()  # Every sample inside.
  assert len(left.get_xticks()) == len(left.get_yticks()) == 5
  for axes, count in ((left, 10), (right, 90)):
    (dots,) = axes.collections
    assert len(dots.get_offsets()) == count
    (crosses,) = [line for line in axes.get_lines() if line.get_label().startswith("true modes")]
    np.testing.assert_array_equal(np.stack([crosses.get_xdata(), crosses.get_ydata()], 1), modes)
  assert left.get_title() == f"flagged ({meaning})\n10 of 100, all shown"
  assert right.get_title() == "not flagged\n90 of 100, all shown"
  canvas = FigureCanvasAgg(figure)
  canvas.draw()  # Lays the figure out, as saving does.
  renderer = canvas.get_renderer()
  assert left.title.get_window_extent(renderer).x1 < right.title.get_window_extent(renderer).x0
  (legend,) = figure.legends
  assert [t.get_text() for t in legend.get_texts()] == ["samples", "true modes (8)"]
  path = report.save_hallucination_figure(
    str(tmp_path / "points.png"), samples, flags, meaning, modes=modes
  )
  assert Image.open(path).size == (900, 450)


def _numpy_off_manifold(reference, queries, k):
  """[n] bool: query farther than NND_k(r) from every reference r (float64, brute force)."""
  reference, queries = np.asarray(reference, np.float64), np.asarray(queries, np.float64)
  within = np.sqrt(((reference[:, None] - reference[None]) ** 2).sum(-1))
  radii = np.sort(within, axis=1)[:, k]  # Column 0 is the point itself.
  between = np.sqrt(((queries[:, None] - reference[None]) ** 2).sum(-1))
  return ~(between <= radii[None]).any(axis=1)


def test_floors_are_each_estimator_on_held_out_real_data(tmp_path_factory, classifier):
  from aigc_jax.evaluation.features import ClassifierFeatureExtractor

  workdir = _train("vae", "mlp", tmp_path_factory, classifier["data_dir"])
  results = report.evaluate_run(
    workdir,
    classifier_workdir=classifier["workdir"],
    num_samples=NUM_SAMPLES,
    data_dir=classifier["data_dir"],
  )
  assert results["reference"] == {"split": "train", "n": 1497, "of": 1497}
  assert results["held_out"] == {"split": "test", "n": 300}
  extractor = ClassifierFeatureExtractor.from_state(
    inference.load_classifier(classifier["workdir"])
  )
  train, _ = data.load_split_images("digits28", "train", classifier["data_dir"])
  test, labels = data.load_split_images("digits28", "test", classifier["data_dir"])
  off = _numpy_off_manifold(extractor.features(train), extractor.features(test), k=3)
  manifold_floor = results["generation"]["manifold_hallucination_rate"]["floor"]
  assert manifold_floor["n"] == 300 and abs(manifold_floor["count"] - off.sum()) <= 1
  probs = np.asarray(extractor.probabilities(test))
  unrecognisable_floor = results["generation"]["unrecognisable_rate"]["floor"]
  assert unrecognisable_floor["count"] == (probs.max(axis=1) < 0.5).sum()
  flip_floor = results["reconstruction"]["reconstruction_class_flip_rate"]["floor"]
  assert flip_floor["count"] == (probs.argmax(axis=1) != labels).sum()
  np.testing.assert_allclose(
    1 - flip_floor["rate"], results["classifier"]["test_accuracy"], atol=1e-6
  )
  with open(os.path.join(results["output_dir"], "eval.md")) as f:
    table = f.read()
  assert "| metric | value | uncertainty | real-data floor |" in table
  assert "1497 of the 1497 'train' examples" in table


def test_points_are_their_own_feature_space_with_exact_support_rates(
  tmp_path_factory, classifier, monkeypatch
):
  """A VAE on the ring of 8 Gaussians: no classifier, exact support and mode-collapse metrics
  that agree with each other and with numpy on the real data."""
  config = helpers.tiny_config("vae")
  config.dataset.name, config.dataset.data_dir = "gaussian_ring8", classifier["data_dir"]
  config.model.update(
    likelihood="gaussian", likelihood_scale=0.05, output_range="unbounded", latent_dim=2
  )
  config.train.update(num_steps=30, eval_every=0, sample_every=0)
  workdir = str(tmp_path_factory.mktemp("ring"))
  training.train_and_evaluate(config, workdir)
  figures, save_figure = [], report.save_hallucination_figure
  monkeypatch.setattr(
    report,
    "save_hallucination_figure",
    lambda *args, **kwargs: figures.append(kwargs) or save_figure(*args, **kwargs),
  )
  results = report.evaluate_run(workdir, num_samples=500, data_dir=classifier["data_dir"])
  assert "classifier" not in results and results["settings"]["classifier_workdir"] is None
  assert results["reference"] == {
    "split": "train",
    "n": reference_lib.REFERENCE_SIZE,
    "of": 100_000,
  }
  generation, reconstruction = results["generation"], results["reconstruction"]
  support, collapse = generation["support_hallucination_rate"], generation["mode_collapse"]
  # Two implementations of "within 3 standard deviations of the nearest mode" agree.
  np.testing.assert_allclose(collapse["high_quality_fraction"], 1 - support["rate"], atol=1e-6)
  np.testing.assert_allclose(
    collapse["floor"]["high_quality_fraction"], 1 - support["floor"]["rate"], atol=1e-6
  )
  test, _ = data.load_split_images("gaussian_ring8", "test", classifier["data_dir"])
  spec = data.get_dataset_spec("gaussian_ring8")
  mahalanobis = np.sqrt(
    (((test[:, None] - spec.mixture.means[None]) / spec.mixture.stds[None]) ** 2).sum(-1)
  ).min(axis=1)
  assert support["floor"]["count"] == (mahalanobis >= 3).sum()
  assert 0.005 < support["floor"]["rate"] < 0.02  # P(chi2_2 >= 9) = 0.0111.
  assert set(reconstruction) == {"reconstruction_hallucination_rate"}
  assert set(results["fidelity"]) == {"mse"}
  assert "manifold_hallucination_rate" in generation and "unrecognisable_rate" not in generation
  with open(os.path.join(results["output_dir"], "eval.md")) as f:
    table = f.read()
  assert "feature space: the coordinates themselves" in table and "| modes_captured |" in table
  assert Image.open(results["hallucination_figure"]).size == (900, 450)
  (call,) = figures  # The figure of the points draws the mixture's true modes.
  np.testing.assert_array_equal(call["modes"], spec.mixture.means)


def _conditional_diffusion(config):
  """The tiny config as a class-conditional DDPM (classifier-free guidance, the MLP denoiser)."""
  config.model.family = "diffusion"
  config.model.conditioning = "embedding"
  cfg = config.model.diffusion
  cfg.update(num_timesteps=10, sampling_steps=10, width=16, ema_decay=0.0, guidance_scale=1.0)
  return config


@pytest.mark.parametrize("family", ["cvae", "conditional_diffusion"])
def test_conditional_model_reports_its_control_error(tmp_path_factory, classifier, family):
  config = helpers.tiny_config("vae")
  config.dataset.data_dir = classifier["data_dir"]
  config.model.conditioning = "concat"
  if family == "conditional_diffusion":
    config = _conditional_diffusion(config)
  config.train.update(num_steps=30, eval_every=0, sample_every=0)
  workdir = str(tmp_path_factory.mktemp(family))
  training.train_and_evaluate(config, workdir)
  results = report.evaluate_run(
    workdir,
    classifier_workdir=classifier["workdir"],
    num_samples=200,
    data_dir=classifier["data_dir"],
  )
  control = results["generation"]["control_error_rate"]
  assert control["n"] == 200 and control["ci_low"] <= control["rate"] <= control["ci_high"]
  if family == "cvae":
    flip = results["reconstruction"]["reconstruction_class_flip_rate"]
    assert control["floor"] == flip["floor"]
  else:  # No encoder: the floor is the classifier's error on real test images alone.
    assert 0.0 <= control["floor"]["rate"] <= 0.2


def test_a_config_that_cannot_be_built_is_its_own_error_not_damage(tmp_path_factory, classifier):
  workdir = _train("vae", "mlp", tmp_path_factory, classifier["data_dir"])

  def unbuildable(config, shape):
    raise ConfigError("Cannot import module 'gone' named in model.imports; install it.")

  with pytest.raises(ConfigError, match="^Cannot import module 'gone'"):
    inference.load_for_inference(workdir, get_family=unbuildable)
