"""In-domain classifier on simple_shapes (offline): the class oracle and feature space of the
hallucination benchmark's estimated rates on that dataset.

The 7 classes are the presence patterns of the three shapes (`data.simple_shapes`). Networks as
`classifier_mnist` (Conv 32 -> Conv 64, 4x4 stride 2, -> Dense 128 features -> Dense 7).
"""

from experiments.configs import classifier_mnist


def get_config():
  config = classifier_mnist.get_config()
  config.dataset.name = "simple_shapes"
  config.train.batch_size = 64
  config.train.num_steps = 600
  config.train.log_every = 50
  config.train.eval_every = 300
  config.checkpoint.save_every = 300
  return config
