"""Test set-up: eight forced CPU devices, so pmap and shard_map run here as on a GPU host."""

import os

# Must be set before jax initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import subprocess  # noqa: E402  (after the environment that jax reads)

import pytest  # noqa: E402


@pytest.fixture
def small_filesystem(tmp_path):
  """A 16 MiB tmpfs; skipped where mounting needs privileges this machine does not give."""
  mount_point = tmp_path / "fs"
  mount_point.mkdir()
  result = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
    capture_output=True,
    text=True,
  )
  if result.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
  yield mount_point
  subprocess.run(["umount", "-l", str(mount_point)], check=False)
