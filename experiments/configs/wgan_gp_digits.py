"""WGAN-GP (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs") on digits28 with the
`dcgan28` networks: Wasserstein loss, gradient penalty lambda = 10 on random interpolates of
real and generated images, a critic without BatchNorm (the paper's advice), five critic
updates per generator update, each on 64 real and 64 generated images, Adam lr 1e-4, beta1 0,
beta2 0.9 (the paper's). One difference: the generator's update uses all 320 of the step's
generated images (the paper draws 64 new ones).
"""

from experiments.configs import gan_digits


def get_config():
  config = gan_digits.get_config()
  config.model.encoder.norm = "none"
  config.model.gan.loss = "wasserstein"
  config.model.gan.regularizer = "gradient_penalty"
  config.model.gan.regularizer_weight = 10.0
  config.model.gan.discriminator_steps = 5
  config.train.batch_size = 5 * 64
  config.optimizer.learning_rate = 1e-4
  config.optimizer.b1 = 0.0
  config.optimizer.b2 = 0.9
  return config
