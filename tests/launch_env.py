"""The environment a test gives a launcher subprocess: this session's, less a device count forced in XLA_FLAGS.

A launcher under test sees one CPU device unless the test asks for more (`device_count`). The session's other
XLA flags stay: tests/conftest.py compiles without LLVM's optimisations, and a run that a subprocess starts
and this process continues (or compares bit for bit) must be the same program in both.
"""

import os

_FORCED_DEVICES = "--xla_force_host_platform_device_count"


def xla_flags(device_count: int | None = None) -> str:
  """This session's XLA_FLAGS without a forced device count, plus `device_count` CPU devices if given."""
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(_FORCED_DEVICES)]
  if device_count is not None:
    flags.append(f"{_FORCED_DEVICES}={device_count}")
  return " ".join(flags)


def without_forced_devices(env: dict[str, str]) -> dict[str, str]:
  """`env` (a copy of os.environ) with XLA_FLAGS as `xla_flags()` gives, or none if that is empty."""
  env.pop("XLA_FLAGS", None)
  if xla_flags():
    env["XLA_FLAGS"] = xla_flags()
  return env
