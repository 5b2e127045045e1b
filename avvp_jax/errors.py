"""User-facing errors.

Every problem with what a user hands us (a file, a shape, a label, a flag) raises `InputError` with one
sentence that names the culprit and says how to fix it. The launchers catch it and print it as a single
line with a non-zero exit code, never a traceback.
"""


class InputError(ValueError):
  """Bad input from the user: the message names the culprit and the fix."""
