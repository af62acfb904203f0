"""The filtering figure's axes are padded: curves along 0 or 1 (the quick benchmark's) stay
visible instead of lying on the frame."""

from aigc_jax.hallucination_benchmark import figures, protocols
from aigc_jax.hallucination_benchmark.settings import Setting


def test_filtering_curves_on_the_frame_stay_inside_the_axes():
  setting = Setting(
    dataset="gaussian_ring8",
    name="gan",
    family="gan",
    variant="",
    knobs={},
    config=None,
    seeds=(0,),
    checkpoints=(2,),
  )
  # As in the quick benchmark: every hallucination removed while most valid samples are kept.
  summary = {"valid_kept": [1.0, 0.99, 0.98], "hallucinations_removed": [1.0, 1.0, 1.0]}
  record = {"checkpoints": {"2": [{"generation": {"filtering": {"realism": summary}}}]}}
  plan = protocols.Plan("standard", True, (setting,), {"gaussian_ring8": 300})
  fig = figures.filtering_plot(plan, [(setting, record)])
  ax = fig.axes[0]
  # The whole range of fractions, with room above 1 (autoscaling gave 0.95-1.0025: the
  # curve on the top frame).
  low, high = ax.get_ylim()
  assert low <= 0.0 and high >= 1.02 - 1e-9
  assert ax.get_xlim()[0] <= 0.0 and ax.get_xlim()[1] >= 1.02 - 1e-9
  (line,) = ax.get_lines()
  assert list(line.get_ydata()) == [1.0, 1.0, 1.0]
  figures.plt.close(fig)


def test_learning_curves_plot_the_mean_over_seeds_and_mark_the_unconverged():
  def setting(name):
    return Setting("gaussian_ring8", name, "gan", "", {}, None, (0, 1), (25, 50, 100))

  def record(rates_per_step):
    return {
      "checkpoints": {
        str(step): [
          {"generation": {"exact": {"support_hallucination_rate": {"rate": r}}}} for r in rates
        ]
        for step, rates in rates_per_step.items()
      }
    }

  flat = record({25: [0.3, 0.5], 50: [0.4, 0.4], 100: [0.4, 0.41]})
  falling = record({25: [0.9, 0.9], 50: [0.8, 0.7], 100: [0.2, 0.3]})
  records = [(setting("gan"), flat), (setting("gan_hinge"), falling)]
  plan = protocols.Plan("standard", False, tuple(s for s, _ in records), {"gaussian_ring8": 300})
  fig = figures.learning_curves_plot(plan, records)
  lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
  assert set(lines) == {"gan", "gan_hinge (unconverged)"}
  assert list(lines["gan"].get_xdata()) == [25, 50, 100]
  assert list(lines["gan"].get_ydata()) == [0.4, 0.4, 0.405]
  assert lines["gan_hinge (unconverged)"].get_ydata()[-1] == 0.25
  figures.plt.close(fig)
