"""Starting JAX's distributed runtime only when asked, from flags or the environment, and
one-line errors for settings that cannot work (the real multi-process runs are in
tests/experiments/test_multiprocess.py)."""

import logging
import re
import signal

import jax
import pytest

from aigc_jax import distributed

ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


@pytest.fixture
def calls(monkeypatch):
  """Records the calls to jax.distributed.initialize instead of making them."""
  for name in ENV:
    monkeypatch.delenv(name, raising=False)
  recorded = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: recorded.append(kw))
  return recorded


def test_nothing_asked_nothing_started(calls):
  settings = distributed.settings_from()
  assert not settings.requested
  assert distributed.initialize(settings) is False and calls == []


def test_flags_then_environment_reach_jax(calls, monkeypatch):
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "3")
  settings = distributed.settings_from(process_id=2, heartbeat_timeout_s=7)  # Flag wins.
  assert distributed.initialize(settings) is True
  assert calls == [
    dict(
      coordinator_address="10.0.0.1:1234",
      num_processes=4,
      process_id=2,
      initialization_timeout=300,
      heartbeat_timeout_seconds=7,
    )
  ]


def test_processes_other_than_0_print_no_events(calls, monkeypatch):
  from aigc_jax import console

  monkeypatch.setattr(jax, "process_index", lambda: 1)
  level = console.LOGGER.level
  try:
    distributed.initialize(
      distributed.settings_from(coordinator_address="h:1", num_processes=2, process_id=1)
    )
    assert not console.LOGGER.isEnabledFor(logging.INFO)
    assert console.LOGGER.isEnabledFor(logging.WARNING)
  finally:
    console.LOGGER.setLevel(level)  # setLevel, not setattr: the logger caches levels.


def test_sigterm_ends_the_process_again_after_initialisation(calls):
  """JAX's preemption notifier takes SIGTERM; until the loop's handler, it must still kill."""
  previous = signal.signal(signal.SIGTERM, lambda *args: None)  # Stands in for JAX's.
  try:
    distributed.initialize(distributed.Settings(auto=True))
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
  finally:
    signal.signal(signal.SIGTERM, previous)


def test_auto_detection_passes_nothing_but_the_timeouts(calls):
  assert distributed.initialize(distributed.settings_from(auto=True)) is True
  assert calls == [
    dict(
      coordinator_address=None,
      num_processes=None,
      process_id=None,
      initialization_timeout=300,
      heartbeat_timeout_seconds=100,
    )
  ]


@pytest.mark.parametrize(
  "kwargs,env,expected",
  [
    (
      dict(num_processes=2, process_id=2),
      {},
      "--process_id is 2 but --num_processes is 2; process ids run from 0 to num_processes - 1.",
    ),
    (dict(coordinator_address="10.0.0.1"), {}, "--coordinator_address '10.0.0.1' is not HOST:PORT"),
    (
      {},
      {"JAX_NUM_PROCESSES": "two"},
      "The environment variable JAX_NUM_PROCESSES='two' is not an integer",
    ),
    (dict(num_processes=0), {}, "--num_processes is 0; it must be at least 1."),
  ],
)
def test_impossible_settings_are_one_line(calls, monkeypatch, kwargs, env, expected):
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  with pytest.raises(distributed.DistributedSetupError, match="^" + re.escape(expected)):
    distributed.settings_from(**kwargs)
  assert calls == []


def test_what_jax_cannot_find_is_one_line(monkeypatch):
  def initialize(**kwargs):
    raise ValueError("coordinator_address should be defined.")

  monkeypatch.setattr(jax.distributed, "initialize", initialize)
  with pytest.raises(distributed.DistributedSetupError) as error:
    distributed.initialize(distributed.Settings(auto=True))
  message = str(error.value)
  assert (
    message.startswith(
      "Cannot start a multi-process run (coordinator_address should be "
      "defined.); pass --coordinator_address"
    )
    and "\n" not in message
  )


def test_single_process_agreements_are_no_ops():
  assert distributed.message_from_process_0("busy") == "busy"
  distributed.barrier("anything")  # Returns at once: nobody to wait for.
  assert not distributed.is_peer_failure(RuntimeError("Gloo all-reduce failed"))
