"""bench/bench_vs_official.py: its phases from recorded events (hand-worked sums), its hooks on a small
official-style PyTorch script run as a whole process, and its CPU patches of a checkout."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SPEC = importlib.util.spec_from_file_location(
    "bench_vs_official", os.path.join(ROOT, "bench", "bench_vs_official.py")
)
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def _event(name, begin, end=None):
  return {"event": name, "begin": begin, "end": begin if end is None else end}


class PhasesTest(absltest.TestCase):

  def test_ours(self):
    # Launch at 100; data build 105-107; main 104-160; first batch 110; compiled 118; validations 130-134 and
    # 150-155; saves 135-136 and 155-157.5; test report 160-163; exit at 165.
    events = [
        _event("data_build", 105, 107),
        _event("first_batch", 110),
        _event("compiled", 118),
        _event("validation", 130, 134),
        _event("save", 135, 136),
        _event("validation", 150, 155),
        _event("save", 155, 157.5),
        _event("main", 104, 160),
        _event("data_build", 160.5, 160.6),  # the test report's reuse: not start-up
        _event("test_report", 160, 163),
    ]
    got = bench.phases(events, start=100.0, end=165.0)
    want = {
        "start-up": 10.0,
        "compile": 8.0,
        "steps": 50.0 - 8.0 - 9.0 - 3.5,
        "validation": 9.0,
        "saves": 3.5,
        "test report": 3.0,
        "total": 65.0,
        "data build": 2.0,
    }
    want["other"] = 65.0 - (10.0 + 8.0 + 29.5 + 9.0 + 3.5 + 3.0)
    self.assertEqual(set(got), set(want))
    for key, value in want.items():
      self.assertAlmostEqual(got[key], value, msg=key)

  def test_official_with_a_test_process(self):
    events = [
        _event("first_batch", 20),
        _event("validation", 40, 70),
        _event("save", 70, 71),
        _event("main", 5, 72),
    ]
    got = bench.phases(events, start=0.0, end=73.0, test_seconds=30.0)
    self.assertAlmostEqual(got["start-up"], 20.0)
    self.assertAlmostEqual(got["compile"], 0.0)
    self.assertAlmostEqual(got["steps"], 52.0 - 30.0 - 1.0)
    self.assertAlmostEqual(got["test report"], 30.0)
    self.assertAlmostEqual(got["total"], 103.0)
    self.assertAlmostEqual(got["other"], 103.0 - (20.0 + 21.0 + 30.0 + 1.0 + 30.0))

  def test_a_run_that_never_trained_is_refused(self):
    with self.assertRaisesRegex(ValueError, "first batch"):
      bench.phases([_event("main", 0, 1)], start=0.0, end=2.0)


_OFFICIAL_STYLE = """
import sys
import torch

def eval(model):
  with torch.no_grad():
    return float(model(torch.ones(4, 3)).sum())

def main():
  torch.manual_seed(0)
  model = torch.nn.Linear(3, 1)
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  for epoch in range(2):
    for _ in range(3):
      optimizer.zero_grad()
      model(torch.ones(4, 3)).pow(2).mean().backward()
      optimizer.step()
    print("val", eval(model))
    torch.save(model.state_dict(), sys.argv[1])

if __name__ == "__main__":
  main()
"""


class HookedRunnerTest(absltest.TestCase):

  def test_records_the_phases_of_an_official_style_script(self):
    folder = self.create_tempdir().full_path
    script = os.path.join(folder, "main_toy.py")
    with open(script, "w", encoding="utf-8") as f:
      f.write(textwrap.dedent(_OFFICIAL_STYLE))
    events = os.path.join(folder, "events.jsonl")
    saved = os.path.join(folder, "model.pt")
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "bench", "bench_vs_official.py"),
            "--hooked",
            "official",
            events,
            "1",
            script,
            saved,
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    self.assertEqual(done.returncode, 0, done.stderr)
    self.assertEqual(done.stdout.count("val "), 2)  # the script ran as written
    self.assertTrue(os.path.exists(saved))
    with open(events, encoding="utf-8") as f:
      names = [json.loads(line)["event"] for line in f]
    # One first batch (the hook removes itself), one validation and one save per epoch, then main().
    self.assertEqual(names, ["first_batch", "validation", "save", "validation", "save", "main"])
    got = bench.phases(bench.read_events(events), start=0.0, end=1e10)
    self.assertGreater(got["steps"], 0.0)
    self.assertEqual(got["compile"], 0.0)


_HAN_MAIN = """
audio = sample['audio'].to('cuda')
target = sample['label'].to('cuda')
df_a = pd.read_csv("data/AVVP_eval_audio.csv", header=0, sep='\\t')
df_v = pd.read_csv("data/AVVP_eval_visual.csv", header=0, sep='\\t')
"""


class PatchTest(absltest.TestCase):

  def test_han_patches_and_their_log(self):
    checkout = self.create_tempdir().full_path
    with open(os.path.join(checkout, "main_avvp.py"), "w", encoding="utf-8") as f:
      f.write(_HAN_MAIN)
    log = bench.patch_checkout(checkout, "han", "/feats", sys.executable)
    with open(os.path.join(checkout, "main_avvp.py"), encoding="utf-8") as f:
      text = f.read()
    self.assertNotIn("cuda", text)
    self.assertEqual(text.count(".to('cpu')"), 2)
    self.assertIn("'/feats/labels/AVVP_eval_audio.csv'", text)
    self.assertIn("'/feats/labels/AVVP_eval_visual.csv'", text)
    self.assertIn("(2x; no GPU)", log[0])
    standin = os.path.join(checkout, "torchvision", "transforms.py")
    if os.path.exists(standin):  # this interpreter has no working torchvision
      done = subprocess.run(
          [
              sys.executable,
              "-c",
              "from torchvision import transforms; "
              "print(transforms.Compose([lambda x: x + 1, lambda x: 2 * x])(3))",
          ],
          cwd=checkout,
          capture_output=True,
          text=True,
          check=True,
      )
      self.assertEqual(done.stdout.strip(), "8")
      self.assertIn("stand-in", log[-1])

  def test_another_checkout_is_refused(self):
    checkout = self.create_tempdir().full_path
    with open(os.path.join(checkout, "main_avvp.py"), "w", encoding="utf-8") as f:
      f.write("print('no device strings here')\n")
    with self.assertRaisesRegex(ValueError, "main_avvp.py.*not found"):
      bench.patch_checkout(checkout, "han", "/feats", sys.executable)


if __name__ == "__main__":
  absltest.main()
