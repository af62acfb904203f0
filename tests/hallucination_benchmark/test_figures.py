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
