"""The watcher of a multi-process command: JAX's fatal abort becomes one line and exit 69,
signals reach the child, everything else passes through. Children here are small Python
scripts that imitate what the runtime prints (no jax, well under a second each)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from experiments import supervisor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _supervise(child_script, process_id=1, num_processes=2):
  """Starts a supervisor (in its own process) around `child_script`; returns its Popen."""
  driver = textwrap.dedent(f"""
      import sys
      from aigc_jax import distributed
      from experiments import supervisor
      settings = distributed.Settings(coordinator_address="127.0.0.1:1", process_id={process_id},
                                      num_processes={num_processes})
      sys.exit(supervisor.run_child(settings, "AIGC_JAX_SUPERVISED",
                                    [sys.executable, "-c", {child_script!r}]))
  """)
  # Bytes, not text: text mode would turn the progress bar's \r into \n.
  return subprocess.Popen(
    [sys.executable, "-c", driver], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
  )


ABORTING_CHILD = textwrap.dedent(r"""
    import os, sys
    assert os.environ["AIGC_JAX_SUPERVISED"] == "1"
    chatter = "is connected to 1 peer ranks. Expected number of connected peer ranks is : 1"
    print(f"[Gloo] Rank [Gloo] Rank 1 {chatter}\n0 {chatter}\n")  # Two threads at once.
    print("summary line", flush=True)
    sys.stderr.write("progress\r50%\rwarning: a real warning\n60%")
    sys.stderr.write("E1125 12:21:45.265404   26388 coordination_service.cc:1549] Use error "
                     "polling: UNAVAILABLE: The following tasks are unhealthy (stopped sending "
                     "heartbeats):\n1\nThe tasks have crashed. Check the task logs.\n")
    sys.stderr.write("E1125 12:21:45.265404   26388 coordination_service_agent.cc:289] "
                     "Polled an error\n")
    sys.stderr.write("F1125 12:21:45.265446   26388 client.h:80] Terminating process because the "
                     "JAX distributed service detected fatal errors. This most likely indicates "
                     "that another task died\n*** Check failure stack trace: ***\n"
                     "    @     0x7f95b84eb505  std::_Function_handler<>::_M_invoke()\n")
    sys.stderr.flush()
    os.abort()
""")


def test_fatal_runtime_abort_becomes_one_line_and_exit_69():
  p = _supervise(ABORTING_CHILD)
  out, err = (stream.decode() for stream in p.communicate(timeout=60))
  assert p.returncode == 69
  assert out == "summary line\n"  # Gloo chatter (interleaved) and its blank remains dropped.
  assert err == (
    "progress\r50%\rwarning: a real warning\n60%\n"
    "error: process 1 of 2: another process of this run died or became unreachable "
    "(JAX's distributed runtime lost contact with it); this one stopped too. "
    "Restart every process with the same command to resume from the newest "
    "checkpoint.\n"
  )


def test_child_exit_codes_pass_through_and_signals_reach_the_child():
  child = textwrap.dedent("""
      import signal, sys, time
      signal.signal(signal.SIGTERM, lambda *a: sys.exit(75))
      print("ready", flush=True)
      time.sleep(60)
  """)
  p = _supervise(child)
  assert p.stdout.readline() == b"ready\n"
  p.send_signal(signal.SIGTERM)
  out, err = p.communicate(timeout=60)
  assert (p.returncode, out, err) == (75, b"", b"")
  p = _supervise("import sys; print('done'); sys.exit(2)")
  assert p.communicate(timeout=60) == (b"done\n", b"") and p.returncode == 2


def test_the_child_dies_with_its_supervisor():
  child = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
  p = _supervise(child)
  child_pid = int(p.stdout.readline())
  p.kill()
  p.wait(timeout=10)
  for _ in range(100):  # PR_SET_PDEATHSIG: the kernel kills it at once.
    try:
      os.kill(child_pid, 0)
    except ProcessLookupError:
      return
    time.sleep(0.05)
  os.kill(child_pid, signal.SIGKILL)
  raise AssertionError("the child outlived its supervisor")


def test_only_multiprocess_commands_are_supervised(monkeypatch):
  from aigc_jax import distributed
  from experiments import cli

  monkeypatch.setattr(
    supervisor,
    "run_child",
    lambda *a, **k: (_ for _ in ()).throw(AssertionError("supervised a single-process command")),
  )
  cli.supervise(distributed.Settings())  # Returns: nothing was asked for.
  monkeypatch.setenv("AIGC_JAX_SUPERVISED", "1")
  cli.supervise(
    distributed.Settings(num_processes=2, process_id=0, coordinator_address="h:1")
  )  # Already the child.
