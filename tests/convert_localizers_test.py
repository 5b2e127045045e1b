"""Official AVE localizer checkpoints through the front door: `launch/convert_official.py`'s code path
(`avvp_jax.convert.convert_official`), `avvp_jax.load_localizer` and `launch/evaluate.py`'s evaluation.

The official files are made here as the official scripts make them, from the PyTorch transcriptions of the
official forwards (tests/ave_torch_oracles.py, tests/cmbs_torch_oracle.py) with random weights:
AVE-ECCV18 and PSP `torch.save` the whole module, whose classes are renamed to the official module and class
names (`models.att_Net`, `fully_model.psp_net` and its `fully_model.AVGA`, ...) by a fake module registered in
`sys.modules` while saving only; CMBS saves `nn.DataParallel(model.double()).state_dict()` (`module.` keys,
float64). Every converted predictor's outputs equal the torch forward's to 1e-5, and what must be refused is
refused in one line naming the file: a missing key, a wrong shape, another model's file, and pickles that
would run code (whose marker file must not appear).
"""

import contextlib
import importlib.util
import os
import subprocess
import sys
import types
import warnings

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
import jax
import ml_collections
import numpy as np
import torch

import avvp_jax
from avvp_jax import convert
from avvp_jax import state as state_lib
from avvp_jax import tasks
from avvp_jax.convert import cmbs as convert_cmbs
from avvp_jax.convert import localizers
from avvp_jax.convert import torch_pickle
from avvp_jax.errors import InputError
from avvp_jax.models import cmbs as cmbs_model
from avvp_jax.models import psp as psp_model
from avvp_jax.tools import evaluate_checkpoint
import ave_torch_oracles as oracles
import cmbs_torch_oracle
import torch_oracles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = dict(rtol=1e-5, atol=1e-5)
PSP_GAIN = 2.0  # as models_psp_test.py: logits spread by ~1, pruning acts
# The oracle classes under their official names.
OFFICIAL_NAMES = {
    "AttNet": "att_Net",
    "TBMRFNet": "TBMRF_Net",
    "PSPNet": "psp_net",
    "AVGA": "AVGA",
    "LSTMAV": "LSTM_A_V",
    "PSPModule": "PSP",
    "Classify": "Classify",
}
# model -> (the official module its classes are pickled from, a builder of the random oracle)
PICKLED = {
    "av_att": ("models", lambda: oracles.randomize(oracles.AttNet(), 0)),
    "dmrn": ("models_fusion", lambda: oracles.randomize(oracles.TBMRFNet(), 0)),
    "av_att_weak": ("models_weakly", lambda: oracles.randomize(oracles.AttNet(weak=True), 0)),
    "psp": (
        "fully_model",
        lambda: oracles.randomize(oracles.PSPNet(True, psp_model.THRESHOLDS["full"]), 0, PSP_GAIN),
    ),
    "psp_weak": (
        "weakly_model",
        lambda: oracles.randomize(oracles.PSPNet(False, psp_model.THRESHOLDS["weak"]), 0, PSP_GAIN),
    ),
}
CMBS = {
    "cmbs": lambda: torch_oracles.randomize(cmbs_torch_oracle.SupvMainModel(), seed=2),
    "cmbs_weak": lambda: torch_oracles.randomize(cmbs_torch_oracle.WeakMainModel(), seed=1),
}


class Marked:
  """Pickles as `function(*args)`: what a malicious checkpoint asks its unpickler to run."""

  def __init__(self, function, *args):
    self.call = (function, args)

  def __reduce__(self):
    return self.call


def official_classes(model: torch.nn.Module, module_name: str) -> types.ModuleType:
  """Gives every oracle module in `model` its official class (a subclass named as the official one, defined in
  a new module `module_name`, which is returned and not registered); classes named so already are kept.
  """
  fake = types.ModuleType(module_name)
  for sub in model.modules():
    cls = type(sub)
    if cls.__module__ == module_name:  # named so by an earlier save
      setattr(fake, cls.__name__, cls)
    if cls.__module__ != oracles.__name__:
      continue
    name = OFFICIAL_NAMES[cls.__name__]
    if not hasattr(fake, name):
      setattr(fake, name, type(name, (cls,), {"__module__": module_name, "__qualname__": name}))
    sub.__class__ = getattr(fake, name)
  return fake


@contextlib.contextmanager
def registered(module: types.ModuleType):
  """`module` importable by its name inside the block only."""
  assert module.__name__ not in sys.modules
  sys.modules[module.__name__] = module
  try:
    yield
  finally:
    del sys.modules[module.__name__]


def save_whole(model: torch.nn.Module, module_name: str, path: str, legacy: bool = False) -> str:
  """`torch.save(model, path)` with the official class names (legacy: torch's pre-1.6 format, which the
  2018-2021 official releases have); the official module is gone again when this returns."""
  with registered(official_classes(model, module_name)), warnings.catch_warnings():
    warnings.simplefilter(
        "ignore"
    )  # the legacy format's "Couldn't retrieve source code for container"
    torch.save(model, path, _use_new_zipfile_serialization=not legacy)
  assert module_name not in sys.modules
  return path


def save_data_parallel(model: torch.nn.Module, path: str) -> str:
  """CMBS's save: `nn.DataParallel(model).state_dict()` of the float64 model."""
  torch.save({f"module.{k}": v for k, v in model.double().state_dict().items()}, path)
  return path


def forward(model: torch.nn.Module, name: str, audio: np.ndarray, visual: np.ndarray) -> dict:
  """The official forward's outputs under the avvp_jax output names, and the official segment decision."""
  with torch.no_grad():
    if name.startswith("cmbs"):
      out = model(torch.from_numpy(visual).double(), torch.from_numpy(audio).double())
      out = [x.numpy() for x in out]
    else:
      out = model(torch.from_numpy(audio), torch.from_numpy(visual))
      out = [x.numpy() for x in out] if isinstance(out, tuple) else out.numpy()
  if name in ("av_att", "dmrn"):
    return {"segment_prob": out, "segment_class": out.argmax(-1)}
  if name == "av_att_weak":
    return {"video_prob": out[0], "segment_logits": out[1], "segment_class": out[1].argmax(-1)}
  if name == "psp":
    fusion, logits, cross_att, gamma_va, gamma_av = out
    return {
        "fusion": fusion,
        "segment_logits": logits,
        "av_similarity": cross_att,
        "psp_visual_weights": gamma_va,
        "psp_audio_weights": gamma_av,
        "segment_class": logits.argmax(-1),
    }
  if name == "psp_weak":
    video_prob, score, weight, gamma_va, gamma_av = out
    return {
        "video_prob": video_prob,
        "segment_logits": score,
        "temporal_weight": weight,
        "psp_visual_weights": gamma_va,
        "segment_class": score.argmax(-1),
    }
  decide = lambda event, scores: cmbs_torch_oracle.segment_prediction(
      torch.from_numpy(event), torch.from_numpy(scores)
  ).numpy()
  if name == "cmbs":
    is_event, event_scores, gate, av_score = out
    return {
        "event_logits": is_event[..., 0].T,
        "class_logits": event_scores,
        "event_gate": gate[..., 0].T,
        "av_class_logits": av_score,
        "segment_class": decide(is_event[..., 0].T, event_scores),
    }
  gate, raw_logits, event_scores = out
  return {
      "event_gate": gate,
      "class_logits": raw_logits,
      "class_prob": event_scores,
      "segment_class": decide(gate, raw_logits),
  }


def make_official(name: str, directory: str) -> tuple[torch.nn.Module, str]:
  """(the torch model, its official file) of `name`."""
  if name in CMBS:
    model = CMBS[name]()
    return model, save_data_parallel(model, os.path.join(directory, f"{name}.pth.tar"))
  module_name, build = PICKLED[name]
  torch.manual_seed(0)
  model = build()
  return model, save_whole(model, module_name, os.path.join(directory, f"{name}.pt"))


class ConvertedLocalizerTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.directory = self.create_tempdir().full_path

  # One CMBS forward (its compilation takes ~25 s on a 2-core CPU); the weak CMBS's is models_cmbs_test.py's,
  # and its conversion through the front door is checked below.
  @parameterized.named_parameters(
      *[(name, name) for name in localizers.MODELS if name != "cmbs_weak"]
  )
  def test_converted_predictor_matches_the_official_forward(self, name):
    model, path = make_official(name, self.directory)
    out = convert.convert_official(path, os.path.join(self.directory, "out"), name)
    localizer = avvp_jax.load_localizer(out)
    self.assertEqual(localizer.supervision, "weak" if name.endswith("_weak") else "full")
    audio, visual = oracles.inputs(batch=2, seed=1)
    got = localizer.predict(audio, visual)
    want = forward(model, name, audio, visual)
    for key, value in want.items():
      if key == "segment_class":
        np.testing.assert_array_equal(got[key], value, err_msg=key)
      else:
        np.testing.assert_allclose(got[key], value, **TOL, err_msg=key)
    self.assertEqual(got["segment_class"].shape, (2, 10))
    self.assertEqual(got["segment_class"].dtype, np.int32)
    self.assertTrue(((got["segment_class"] >= 0) & (got["segment_class"] <= 28)).all())
    one = localizer.predict(audio[0], visual[0])  # one clip: no batch axis
    np.testing.assert_array_equal(one["segment_class"], got["segment_class"][0])

  def test_weak_cmbs_converts_to_its_own_network(self):
    model, path = make_official("cmbs_weak", self.directory)
    out = convert.convert_official(path, os.path.join(self.directory, "out"))  # auto
    localizer = avvp_jax.load_localizer(out)
    self.assertEqual(localizer.supervision, "weak")
    self.assertIsInstance(state_lib.build_model(localizer.config), cmbs_model.WeakCMBS)
    state = {k: v.numpy() for k, v in model.state_dict().items()}  # float64, no `module.`
    want = convert_cmbs.params_from_state_dict(state, "weak")
    self.assertEqual(jax.tree.structure(localizer.params), jax.tree.structure(want))
    for got, expected in zip(jax.tree.leaves(localizer.params), jax.tree.leaves(want)):
      self.assertEqual(got.dtype, np.float32)
      np.testing.assert_array_equal(got, expected.astype(np.float32))

  def test_auto_finds_each_model_by_its_pickled_class_or_keys(self):
    for name in localizers.MODELS:
      if name in CMBS:
        model = CMBS[name]()
        state = {k: v.numpy() for k, v in model.state_dict().items()}
        self.assertEqual(convert.resolve_model("auto", state, frozenset(), "f.pt"), name)
        continue
      model, path = make_official(name, self.directory)
      pickled = torch_pickle.read_module_state(path)
      self.assertEqual(pickled.class_name, f"{PICKLED[name][0]}.{type(model).__name__}")
      self.assertEqual(
          convert.resolve_model("auto", pickled.state, frozenset(), path, pickled.class_name), name
      )

  def test_state_dict_and_legacy_files_read_the_same(self):
    model, path = make_official("psp", self.directory)
    legacy = save_whole(
        model, "fully_model", os.path.join(self.directory, "legacy.pt"), legacy=True
    )
    wrapped = save_whole(
        torch.nn.DataParallel(model), "fully_model", os.path.join(self.directory, "dp.pt")
    )
    bare = os.path.join(self.directory, "state.pt")
    torch.save(model.state_dict(), bare)
    want = {k: v.numpy() for k, v in model.state_dict().items()}
    classes = {
        path: "fully_model.psp_net",
        legacy: "fully_model.psp_net",
        wrapped: "fully_model.psp_net",
    }
    for file in (path, legacy, wrapped, bare):
      got = torch_pickle.read_module_state(file)
      self.assertEqual(got.class_name, classes.get(file, ""), file)
      self.assertEqual(set(got.state), set(want), file)
      for key in want:
        np.testing.assert_array_equal(got.state[key], want[key], err_msg=key)

  def test_official_code_never_runs_even_where_importable(self):
    model = PICKLED["av_att"][1]()
    ran = []
    fake = official_classes(model, "models")
    fake.att_Net.__setstate__ = lambda self, state: ran.append(state)
    path = os.path.join(self.directory, "again.pt")
    with registered(fake):
      torch.save(model, path)
      pickled = torch_pickle.read_module_state(path)
    self.assertEmpty(ran)
    self.assertEqual(pickled.class_name, "models.att_Net")
    self.assertIn("lstm_audio.weight_ih_l0_reverse", pickled.state)

  def test_av_att_state_dicts_need_the_model_named(self):
    state = oracles.state_dict(PICKLED["av_att"][1]())
    with self.assertRaisesRegex(InputError, "--model=av_att or --model=av_att_weak"):
      convert.resolve_model("auto", state, frozenset(), "x.pt")
    self.assertEqual(
        convert.resolve_model("av_att_weak", state, frozenset(), "x.pt"), "av_att_weak"
    )
    with self.assertRaisesRegex(
        InputError, r"a pickled models_weakly.att_Net\), not AVE-ECCV18 A\+V-att"
    ):
      convert.resolve_model("av_att", state, frozenset(), "x.pt", "models_weakly.att_Net")

  def test_evaluate_scores_it_as_its_predictions_say(self):
    _, path = make_official("av_att", self.directory)
    out = convert.convert_official(path, os.path.join(self.directory, "out"), "av_att")
    config = ml_collections.ConfigDict(avvp_jax.load_localizer(out).config.to_dict())
    config.data.ave.synthetic_train_clips = 16  # the tiny presets' SYNTHETIC build
    config.data.ave.synthetic_eval_clips = 20
    report = evaluate_checkpoint.evaluate_checkpoint(config, None, "test", out)
    self.assertEqual((report["task"], report["num_clips"], report["split"]), ("ave", 20, "test"))
    localizer = avvp_jax.load_localizer(out)
    correct = total = 0
    for batch in tasks.of(config).prepare_data(config, train=False).eval_batches("test"):
      decided = localizer.predict(batch["audio"], batch["visual"])["segment_class"]
      hit = decided == np.asarray(batch["segment_label"]).argmax(-1)
      mask = np.asarray(batch["mask"])[:, None] > 0
      correct += int((hit & mask).sum())
      total += int(mask.sum()) * 10
    self.assertEqual(total, 200)
    self.assertAlmostEqual(report["accuracy"], 100.0 * correct / total, places=4)


class RefusalTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.directory = self.create_tempdir().full_path
    self.out = os.path.join(self.directory, "out")

  def assert_refused(self, path, model, pattern):
    with self.assertRaisesRegex(InputError, pattern) as raised:
      convert.convert_official(path, self.out, model)
    message = str(raised.exception)
    self.assertNotIn("\n", message)
    self.assertIn(repr(path), message)
    self.assertFalse(os.path.exists(self.out))
    return message

  def test_missing_key(self):
    torch.manual_seed(0)
    model = PICKLED["dmrn"][1]()
    del model.U_a[2]._parameters["bias"]
    path = save_whole(model, "models_fusion", os.path.join(self.directory, "dmrn.pt"))
    self.assert_refused(path, "dmrn", "missing U_a.2.bias")

  def test_wrong_shape(self):
    torch.manual_seed(0)
    model = PICKLED["psp_weak"][1]()
    model.W3.weight = torch.nn.Parameter(torch.zeros(1, 28))
    path = save_whole(model, "weakly_model", os.path.join(self.directory, "psp_weak.pt"))
    self.assert_refused(path, "psp_weak", r"W3.weight \(1, 28\) \(expected \(1, 29\)\)")

  def test_cmbs_wrong_shape_and_missing_key(self):
    state = {f"module.{k}": v for k, v in CMBS["cmbs_weak"]().state_dict().items()}
    wrong = dict(state, **{"module.video_cas.weight": torch.zeros(28, 256)})
    path = os.path.join(self.directory, "wrong.pth.tar")
    torch.save(wrong, path)
    self.assert_refused(path, "cmbs_weak", r"video_cas.weight \(28, 256\)")
    del state["module.v_fc.bias"]
    torch.save(state, path)
    self.assert_refused(path, "cmbs_weak", "missing v_fc.bias")

  @parameterized.named_parameters(
      ("av_att_as_psp", "av_att", "psp", r"a pickled models.att_Net\), not PSP"),
      ("psp_as_psp_weak", "psp", "psp_weak", r"a pickled fully_model.psp_net\), not PSP weakly"),
      ("cmbs_as_cmbs_weak", "cmbs", "cmbs_weak", r"it has localize_module.*not CMBS weakly"),
      ("cmbs_as_han", "cmbs", "han", r"CMBS fully supervised .* not HAN"),
      ("psp_weak_as_av_att", "psp_weak", "av_att", r"weakly_model.psp_net\), not AVE-ECCV18"),
  )
  def test_another_models_file(self, made, asked, pattern):
    _, path = make_official(made, self.directory)
    message = self.assert_refused(path, asked, pattern)
    self.assertIn(f"--model={made}", message)

  @parameterized.named_parameters(
      ("os_system", os.system, "system"),
      ("builtins_eval", eval, "builtins.eval"),
      ("subprocess", subprocess.call, "subprocess.call"),
  )
  def test_a_pickle_that_would_run_code_is_refused_before_it_runs(self, function, named):
    marker = os.path.join(self.directory, "MARKER")
    payload = {
        "system": f"touch {marker}",
        "builtins.eval": f"open({marker!r}, 'w').close()",
        "subprocess.call": ["touch", marker],
    }[named]
    torch.manual_seed(0)
    model = PICKLED["av_att"][1]()
    model.extra = Marked(function, payload)  # a plain attribute: pickled with the module's state
    for legacy in (False, True):
      path = save_whole(model, "models", os.path.join(self.directory, f"evil{legacy}.pt"), legacy)
      for asked in ("av_att", "auto"):
        message = self.assert_refused(
            path, asked, f"asks its unpickler for .*{named}.*nothing was run"
        )
        self.assertFalse(os.path.exists(marker), message)

  def test_a_malicious_state_dict_is_refused_too(self):
    marker = os.path.join(self.directory, "MARKER")
    path = os.path.join(self.directory, "evil.pth.tar")
    torch.save(
        {"module.v_fc.weight": torch.zeros(2), "x": Marked(os.system, f"touch {marker}")}, path
    )
    self.assert_refused(path, "cmbs", "system")
    self.assertFalse(os.path.exists(marker))

  def test_llp_options_and_configs_are_refused_for_a_localizer(self):
    _, path = make_official("av_att", self.directory)
    with self.assertRaisesRegex(InputError, "--num_heads is for LLP models"):
      convert.convert_official(path, self.out, "av_att", num_heads=4)
    from configs import han  # pylint: disable=g-import-not-at-top

    with self.assertRaisesRegex(InputError, "--config is a 'llp' config.*configs/ave.py"):
      convert.convert_official(path, self.out, "av_att", han.get_config())
    self.assertFalse(os.path.exists(self.out))

  def test_loaders_refuse_the_other_task(self):
    _, path = make_official("av_att", self.directory)
    out = convert.convert_official(path, self.out, "av_att")
    with self.assertRaisesRegex(InputError, "load_localizer"):
      avvp_jax.load_parser(out)
    with self.assertRaisesRegex(InputError, r"visual has shape \(2, 10, 49, 512\)"):
      avvp_jax.load_localizer(out).predict(*oracles.inputs(2)[:1], np.zeros((2, 10, 49, 512)))


class LauncherTest(absltest.TestCase):

  def run_launcher(self, *flags):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "launch", "convert_official.py"), *flags],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )

  def test_converts_and_refuses_in_one_line(self):
    directory = self.create_tempdir().full_path
    model, path = make_official("dmrn", directory)
    out = os.path.join(directory, "out")
    done = self.run_launcher(f"--official={path}", f"--out={out}")  # auto: the pickled TBMRF_Net
    self.assertEqual(done.returncode, 0, done.stderr)
    localizer = avvp_jax.load_localizer(out)
    self.assertEqual(
        (localizer.config.model.encoder, localizer.config.model.ave.fusion), ("ave", "dmrn")
    )
    audio, visual = oracles.inputs(2, seed=3)
    np.testing.assert_allclose(
        localizer.predict(audio, visual)["segment_prob"],
        forward(model, "dmrn", audio, visual)["segment_prob"],
        **TOL,
    )
    marker = os.path.join(directory, "MARKER")
    model.extra = Marked(os.system, f"touch {marker}")
    evil = save_whole(model, "models_fusion", os.path.join(directory, "evil.pt"))
    refused = self.run_launcher(f"--official={evil}", f"--out={out}2", "--model=dmrn")
    self.assertEqual(refused.returncode, 2)
    self.assertRegex(refused.stderr.strip().splitlines()[-1], f"^error: checkpoint '{evil}' asks")
    self.assertFalse(os.path.exists(marker))
    self.assertFalse(os.path.exists(f"{out}2"))

  def test_model_names_are_the_converters(self):
    before = set(flags.FLAGS)
    spec = importlib.util.spec_from_file_location(
        "launcher_convert_official", os.path.join(ROOT, "launch", "convert_official.py")
    )
    launcher = importlib.util.module_from_spec(spec)
    try:
      spec.loader.exec_module(launcher)
    finally:
      for flag in set(flags.FLAGS) - before:  # other tests import the launchers too
        delattr(flags.FLAGS, flag)
    self.assertCountEqual(launcher.MODEL_NAMES, convert.MODELS + (convert.AUTO,))


if __name__ == "__main__":
  absltest.main()
