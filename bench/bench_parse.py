r"""Times inference with `avvp_jax.inference`: single-clip latency after compilation and batched throughput.

Run from the repository root:

  python bench/bench_parse.py                       # full-size HAN and LEAP, untrained params
  python bench/bench_parse.py --checkpoint=WORKDIR  # a trained model instead

Inputs are SYNTHETIC official-layout clips (VGGish [10, 128], pooled ResNet-152 [10, 2048], R(2+1)D-18
[10, 512]) from `avvp_jax.tasks.llp.synthetic`. For each model and batch size the table gives the first-call
time (compilation included), then the median of `--repeats` calls of
  predict: `Parser.predict` (input checks, one jitted call, transfer to the host), and
  parse:   `Parser.parse` (the same, plus thresholding and event extraction into dicts with
           `avvp_jax.tasks.llp.events`),
as milliseconds per call and clips per second.
"""

import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax

import avvp_jax  # pylint: disable=g-import-not-at-top
from avvp_jax.tasks.llp import batch_keys  # pylint: disable=g-import-not-at-top
from avvp_jax.tasks.llp import synthetic  # pylint: disable=g-import-not-at-top
from avvp_jax.tasks.llp import task as llp_task
from configs import han  # pylint: disable=g-import-not-at-top
from configs import leap  # pylint: disable=g-import-not-at-top
import timing  # pylint: disable=g-import-not-at-top  (bench/, the script's folder)

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "A workdir or checkpoint to time instead of HAN and LEAP."
)
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "16", "64", "256"], "Batch sizes to time.")
_REPEATS = flags.DEFINE_integer("repeats", 20, "Timed calls per batch size (median reported).")


def _untrained_parser(config):
  from avvp_jax import models  # pylint: disable=g-import-not-at-top
  from avvp_jax import state as state_lib  # pylint: disable=g-import-not-at-top

  model = models.build_model(config.model, llp_task.META)
  dummy = state_lib.dummy_inputs(config)
  params = jax.jit(lambda key: model.init(key, *dummy, train=False)["params"])(jax.random.key(0))
  return avvp_jax.Parser(config, params)


def main(argv):
  del argv
  batch_sizes = [int(b) for b in _BATCH_SIZES.value]
  data = synthetic.SyntheticLLP(num_train_clips=8, layout="official", frames="pooled")
  clips = data.features_batch("val", range(max(batch_sizes)))
  if _CHECKPOINT.value:
    parsers = {
        os.path.basename(os.path.normpath(_CHECKPOINT.value)): avvp_jax.load_parser(
            _CHECKPOINT.value
        )
    }
  else:
    parsers = {
        "HAN (hidden 512)": _untrained_parser(han.get_config()),
        "LEAP (hidden 512)": _untrained_parser(leap.get_config()),
    }
  print(
      f"avvp_jax.inference on {jax.devices()[0].platform} ({jax.device_count()} device(s), "
      f"{os.cpu_count()} CPU cores); SYNTHETIC official-layout clips; median of {_REPEATS.value} calls"
  )
  header = (
      f"{'model':<18} {'batch':>5} {'first call ms':>13} {'predict ms':>10} {'predict clips/s':>15} "
      f"{'parse ms':>9} {'parse clips/s':>13}"
  )
  print(header)
  print("-" * len(header))
  for name, parser in parsers.items():
    for batch in batch_sizes:
      if batch == 1:  # a single clip without the batch axis
        inputs = tuple(clips[k][0] for k in batch_keys.FEATURE_KEYS)
      else:
        inputs = tuple(clips[k][:batch] for k in batch_keys.FEATURE_KEYS)
      start = time.perf_counter()
      parser.predict(*inputs)
      first_ms = 1000.0 * (time.perf_counter() - start)
      predict_ms = 1e3 * timing.median_seconds(lambda: parser.predict(*inputs), _REPEATS.value)  # pylint: disable=cell-var-from-loop
      parse_ms = 1e3 * timing.median_seconds(lambda: parser.parse(*inputs), _REPEATS.value)  # pylint: disable=cell-var-from-loop
      print(
          f"{name:<18} {batch:>5} {first_ms:>13.1f} {predict_ms:>10.2f} {1000 * batch / predict_ms:>15.0f} "
          f"{parse_ms:>9.2f} {1000 * batch / parse_ms:>13.0f}",
          flush=True,
      )


if __name__ == "__main__":
  app.run(main)
