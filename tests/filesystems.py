"""Small real filesystems for the tests of full and read-only disks (tmpfs mounts; the
fixture `small_filesystem` is in tests/conftest.py)."""

import subprocess


def make_read_only(mount_point) -> None:
  """Remounts a `small_filesystem` read-only."""
  subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
