"""Multi-process runs on JAX's own multi-controller runtime (`jax.distributed`).

One run may span several processes (one per host, or one per GPU): every process runs the
same command, `jax.distributed.initialize` connects them, and from then on `jax.devices()` is
every device of every process. Nothing here launches processes: a scheduler (SLURM, a TPU pod,
a shell loop) starts them.

`initialize` is called by `experiments.train` and `experiments.evaluate` only when asked:
by a flag (`--distributed`, `--coordinator_address`, `--num_processes`, `--process_id`) or by
the environment (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`). Without
either, nothing is initialised and a run is exactly the single-process run it always was.

The rest are the few cross-process agreements the loop needs: a barrier, a message from
process 0 to all (the workdir lock's verdict), and the recognition of a lost peer.
"""

import dataclasses
import logging
import os
import re
import signal
import threading
from typing import Optional

from aigc_jax.errors import UserError

# EX_UNAVAILABLE of sysexits.h: another process of the run died or cannot be reached; this one
# stopped too. Rerunning every process resumes from the newest checkpoint.
EXIT_CODE_PEER_LOST = 69

ENV_COORDINATOR_ADDRESS = "JAX_COORDINATOR_ADDRESS"  # Read by JAX itself too.
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


class DistributedSetupError(UserError):
  """The multi-process settings are incomplete or contradictory."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """What `jax.distributed.initialize` gets. None lets JAX detect the value (TPU, SLURM...).

  heartbeat_timeout_s: a process that sent no heartbeat for this long counts as dead and the
    others stop (JAX's `heartbeat_timeout_seconds`; JAX's default is 100).
  initialization_timeout_s: how long the processes wait for each other at the start.
  """

  auto: bool = False
  coordinator_address: Optional[str] = None
  num_processes: Optional[int] = None
  process_id: Optional[int] = None
  heartbeat_timeout_s: int = 100
  initialization_timeout_s: int = 300

  @property
  def requested(self) -> bool:
    """Whether these settings ask for a multi-process run at all."""
    return self.auto or any(
      v is not None for v in (self.coordinator_address, self.num_processes, self.process_id)
    )


def _env_int(name: str) -> Optional[int]:
  value = os.environ.get(name, "").strip()
  if not value:
    return None
  try:
    return int(value)
  except ValueError:
    raise DistributedSetupError(
      f"The environment variable {name}={value!r} is not an integer; set it to a whole "
      "number or unset it."
    ) from None


def settings_from(
  *,
  auto: bool = False,
  coordinator_address: Optional[str] = None,
  num_processes: Optional[int] = None,
  process_id: Optional[int] = None,
  heartbeat_timeout_s: int = 100,
  initialization_timeout_s: int = 300,
) -> Settings:
  """Settings from command-line values, each falling back to its environment variable."""
  settings = Settings(
    auto=auto,
    coordinator_address=coordinator_address or os.environ.get(ENV_COORDINATOR_ADDRESS) or None,
    num_processes=num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES),
    process_id=process_id if process_id is not None else _env_int(ENV_PROCESS_ID),
    heartbeat_timeout_s=heartbeat_timeout_s,
    initialization_timeout_s=initialization_timeout_s,
  )
  _check(settings)
  return settings


def _check(settings: Settings) -> None:
  """One-line errors for settings that cannot work, before JAX tries them."""
  if settings.num_processes is not None and settings.num_processes < 1:
    raise DistributedSetupError(
      f"--num_processes is {settings.num_processes}; it must be at least 1."
    )
  if settings.process_id is not None and settings.process_id < 0:
    raise DistributedSetupError(f"--process_id is {settings.process_id}; it must be >= 0.")
  if (
    settings.num_processes is not None
    and settings.process_id is not None
    and settings.process_id >= settings.num_processes
  ):
    raise DistributedSetupError(
      f"--process_id is {settings.process_id} but --num_processes is "
      f"{settings.num_processes}; process ids run from 0 to num_processes - 1."
    )
  if settings.coordinator_address is not None and not re.fullmatch(
    r"\S+:\d+", settings.coordinator_address
  ):
    raise DistributedSetupError(
      f"--coordinator_address {settings.coordinator_address!r} is not HOST:PORT; pass the "
      "address of process 0 and a free port, e.g. 10.0.0.1:1234."
    )
  if settings.heartbeat_timeout_s < 1 or settings.initialization_timeout_s < 1:
    raise DistributedSetupError(
      "--heartbeat_timeout and --initialization_timeout must be at least 1 second."
    )


def initialize(settings: Settings) -> bool:
  """Calls `jax.distributed.initialize` if `settings.requested`; returns whether it did.

  Must run before anything touches a JAX backend. With explicit values JAX uses them; with
  `auto` it fills the missing ones from the cluster it detects (Cloud TPU, SLURM, Open MPI,
  Kubernetes); values it cannot find are a DistributedSetupError. Processes other than 0
  then print no events (`console.event`), only warnings and errors.
  """
  if not settings.requested:
    return False
  import jax  # pylint: disable=import-outside-toplevel

  try:
    jax.distributed.initialize(
      coordinator_address=settings.coordinator_address,
      num_processes=settings.num_processes,
      process_id=settings.process_id,
      initialization_timeout=settings.initialization_timeout_s,
      heartbeat_timeout_seconds=settings.heartbeat_timeout_s,
    )
  except (ValueError, TypeError) as e:  # JAX's own checks: a value is missing or wrong.
    raise DistributedSetupError(
      f"Cannot start a multi-process run ({' '.join(str(e).split())}); pass "
      "--coordinator_address, --num_processes and --process_id (or set JAX_COORDINATOR_ADDRESS, "
      "JAX_NUM_PROCESSES, JAX_PROCESS_ID), or run under SLURM / on a TPU pod with "
      "--distributed."
    ) from e
  # JAX's preemption notifier has taken SIGTERM, which then no longer ends the process; give
  # it back its default action until the training loop installs its own handler (in the
  # main thread only: elsewhere Python cannot set handlers).
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
  if jax.process_index() != 0:  # Events are process 0's to tell; warnings stay everyone's.
    from aigc_jax import console  # pylint: disable=import-outside-toplevel

    console.LOGGER.setLevel(logging.WARNING)
  return True


def is_multiprocess() -> bool:
  """Whether this run has more than one process (starts JAX's backends if not yet)."""
  import jax  # pylint: disable=import-outside-toplevel

  return jax.process_count() > 1


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (no-op in a single-process run)."""
  if not is_multiprocess():
    return
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  multihost_utils.sync_global_devices(f"aigc_jax:{name}")


_MESSAGE_BYTES = 4096


def message_from_process_0(message: str) -> str:
  """Process 0's `message` on every process (each passes its own; only 0's is kept).

  Used where process 0 alone decides (it takes the workdir lock) and all must act alike.
  """
  if not is_multiprocess():
    return message
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  encoded = message.encode("utf-8")[:_MESSAGE_BYTES]
  buffer = np.zeros(_MESSAGE_BYTES + 4, np.uint8)
  buffer[:4] = np.frombuffer(np.uint32(len(encoded)).tobytes(), np.uint8)
  buffer[4 : 4 + len(encoded)] = np.frombuffer(encoded, np.uint8)
  received = np.asarray(multihost_utils.broadcast_one_to_all(buffer))
  length = int(np.frombuffer(received[:4].tobytes(), np.uint32)[0])
  return received[4 : 4 + length].tobytes().decode("utf-8", errors="replace")


# What a collective or the coordination service says when another process is gone.
_PEER_FAILURE = re.compile(
  r"Gloo .*(failed|error)|Connection (reset|refused|closed)|coordination service|"
  r"another task died|DEADLINE_EXCEEDED|UNAVAILABLE",
  re.IGNORECASE,
)


def peer_failure_detail(error: BaseException) -> str:
  """A few words on how `error` (a peer failure) showed itself."""
  text = str(error)
  if re.search(r"Connection reset|Connection closed|Socket closed", text, re.IGNORECASE):
    return "a collective lost its connection to it"
  if "DEADLINE_EXCEEDED" in text:
    return "a collective timed out waiting for it"
  return "a collective failed"


def is_peer_failure(error: BaseException) -> bool:
  """Whether `error`, raised in a multi-process run, means another process is gone."""
  if not is_multiprocess():
    return False
  return bool(_PEER_FAILURE.search(str(error)))


def peer_lost_message(
  detail: str = "", process_id: Optional[int] = None, num_processes: Optional[int] = None
) -> str:
  """The one line printed when this process stops because another one is gone."""
  where = (
    f"process {process_id} of {num_processes}: " if process_id is not None and num_processes else ""
  )
  return (
    f"{where}another process of this run died or became unreachable"
    f"{f' ({detail})' if detail else ''}; this one stopped too. Restart every process "
    "with the same command to resume from the newest checkpoint."
  )
