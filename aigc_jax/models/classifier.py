"""Image classifier whose penultimate layer is a feature space: trunk -> act -> Dense(K).

The trunk is an encoder body (`bodies.ENCODERS`) with `out_features = feature_dim`, so a
"conv" body gives Conv(f, 4x4, stride 2) per width -> flatten -> Dense(feature_dim). Its
activated output is the feature vector that evaluation measures distances in (the role
Inception-v3's pool features play for ImageNet-like data); the last Dense gives class logits.
"""

import flax.linen as nn

from aigc_jax.models.bodies import ACTIVATIONS


class Classifier(nn.Module):
  """`__call__(x [B, H, W, C], train) -> logits [B, K]`; `features(x) -> [B, feature_dim]`.

  Attributes:
    trunk: encoder body mapping images to `[B, feature_dim]` pre-activations.
    num_classes: K, the number of logits.
    activation: name in `bodies.ACTIVATIONS` applied to the trunk's output.
  """

  trunk: nn.Module
  num_classes: int
  activation: str = "relu"

  def setup(self):
    self.head = nn.Dense(self.num_classes)

  def features(self, x, train: bool = False):
    """Penultimate activations `[B, feature_dim]` of images `[B, H, W, C]` in [0, 1]."""
    return ACTIVATIONS.get(self.activation)(self.trunk(x, train))

  def __call__(self, x, train: bool = False):
    return self.head(self.features(x, train))
