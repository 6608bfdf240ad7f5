"""The small fit() setting shared by test_loop.py and test_reliability.py."""

import json

from jaxcnn.train.config import get_config


def small_config(**changes):
  """simple_cnn_small on the digits, 3 epochs of 11 steps; ``changes`` are dotted overrides."""
  c = get_config()
  c.model.name = "simple_cnn_small"
  c.num_epochs = 3
  c.batch_size = 128  # 1456 training examples: 11 steps per epoch
  c.eval_batch_size = 200
  c.log_every_steps = 4
  c.progress_bar = False
  for k, v in changes.items():
    target = c
    *path, last = k.split(".")
    for p in path:
      target = target[p]
    target[last] = v
  return c


def records(workdir):
  """The metrics.jsonl records of a run folder."""
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
