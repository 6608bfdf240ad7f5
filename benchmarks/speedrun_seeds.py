"""The CIFAR-10 speed recipe's test accuracy over seeds, the seeds trained at once.

airbench94's recipe (``experiments/configs/cifar10_speedrun.py``, run by the same function as the
``speedrun_time_to_94`` row of ``benchmarks/gpu_suite.py``) from ``--seeds`` seeds as one
population (one compiled step: vmapped on a GPU, a loop over the models on CPU,
:func:`jaxcnn.train.steps.over_models`), on whatever device JAX sees: the CPU figure of issue 12,
where the GPU suite times it.
Prints each seed's test accuracy (flip-and-translate test-time augmentation, as airbench94), the
mean and standard deviation, and the training time against airbench94's published 94.01% mean::

  python benchmarks/speedrun_seeds.py --data_dir ../shared/data/cifar10 --seeds 2 \
      --json runs/speedrun_seeds.json
  python benchmarks/speedrun_seeds.py --smoke       # toy network and data, seconds

float32 is the default off a GPU (bfloat16 convolutions are slower than float32 on this CPU;
BENCHMARKS.md), bfloat16 on one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_suite  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

PUBLISHED_MEAN = 0.9401  # Jordan 2024: airbench94's mean test accuracy over its runs


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=None,
                      help="folder with CIFAR-10's train.npz and test.npz (unless --smoke)")
  parser.add_argument("--seeds", type=int, default=2, help="how many seeds (0, 1, ...) to train")
  parser.add_argument("--epochs", type=float, default=None,
                      help="override the recipe's 9.9 epochs (a shorter check)")
  parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                      help="compute dtype (auto: bfloat16 on a GPU, else float32)")
  parser.add_argument("--smoke", action="store_true",
                      help="a toy network on 128 synthetic training images, one epoch")
  parser.add_argument("--json", default=None, help="also write the runs to this JSON file")
  args = parser.parse_args(argv)
  if args.seeds < 1:
    parser.error(f"--seeds must be >= 1, got {args.seeds}.")
  if args.epochs is not None and args.epochs <= 0:
    parser.error(f"--epochs must be > 0, got {args.epochs}.")
  data, data_note = gpu_suite.load_cifar10(args.data_dir, args.smoke)

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  device = jax.devices()[0]
  dtype = args.dtype
  if dtype == "auto":
    dtype = "bfloat16" if device.platform == "gpu" else "float32"
  sizes = gpu_suite.SMOKE if args.smoke else gpu_suite.FULL
  t0 = time.perf_counter()
  result = gpu_suite.train_recipe(
      gpu_suite.speedrun_data(data, sizes), list(range(args.seeds)), together=True,
      compute_dtype=dtype,
      epochs=args.epochs or sizes.speedrun_epochs, batch_size=sizes.speedrun_batch,
      model_overrides=sizes.speedrun_model, whitening_images=sizes.whitening_images,
      progress=True)
  total = time.perf_counter() - t0
  accs = np.array([r["accuracy"] for r in result["runs"]])
  seconds = result["runs"][0]["seconds"]
  images = result["total_steps"] * result["batch_size"] * args.seeds
  print(f"airbench94 recipe, {args.seeds} seed(s) trained at once, {result['epochs']:g} epochs "
        f"({result['total_steps']} steps of batch {result['batch_size']}), {dtype}, "
        f"{device.device_kind} ({device.platform}), {data_note}")
  for r in result["runs"]:
    print(f"  seed {r['seed']}: test accuracy {100 * r['accuracy']:.2f}%, "
          f"final loss {r['loss']:.4f}")
  print(f"mean {100 * accs.mean():.2f}% (std {100 * accs.std():.2f}, {args.seeds} seeds); "
        f"airbench94 published {100 * PUBLISHED_MEAN:.2f}%")
  print(f"training {seconds:.0f} s for all seeds ({images / seconds:,.0f} images/s), "
        f"compile warm-up {result['warmup_s']:.0f} s, {total:.0f} s in all")
  if args.json:
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(
        {"device": device.device_kind, "platform": device.platform, "dtype": dtype,
         "data": data_note, "smoke": args.smoke, "mean_accuracy": float(accs.mean()),
         "published_mean_accuracy": PUBLISHED_MEAN, "seconds_all": total, **result}, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
