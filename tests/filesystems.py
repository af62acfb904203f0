"""Small real filesystems for the tests of full and read-only disks (tmpfs mounts)."""
import subprocess

import pytest


@pytest.fixture
def small_filesystem(tmp_path):
  """A 16 MiB tmpfs; skipped where mounting needs privileges this machine does not give."""
  mount_point = tmp_path / "fs"
  mount_point.mkdir()
  result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
  if result.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
  yield mount_point
  subprocess.run(["umount", "-l", str(mount_point)], check=False)


def make_read_only(mount_point) -> None:
  """Remounts a `small_filesystem` read-only."""
  subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
