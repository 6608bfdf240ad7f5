"""Fixed cost of one short training run: setup + data to device + compile + first steps.

A short run is what architecture search and the studies repeat hundreds of times, so its fixed
cost (not the steady-state step time) decides how many candidates fit in a budget. This times
``jaxcnn.train.fit`` on the offline digits with ``simple_cnn_small`` for ``--steps`` steps, several
times in one process (the first run pays the imports' and the compiler's warm-up; later runs show
what a repeated run costs), and, with ``--cache DIR``, with JAX's persistent compilation cache.

  python benchmarks/short_run.py                       # 5 runs in one process
  python benchmarks/short_run.py --cache /tmp/jaxcnn-cache   # run it twice: the second process
                                                             # reads the compiled programs
  python benchmarks/short_run.py --mode population     # the same runs through one Population and
                                                       # one device-resident source

``--mode fit`` pays, every run, for loading the data, fitting the preprocessing, a run folder and a
fresh compilation; ``--mode population`` is what the studies and search do: the data go to the
device once and a new run of the same shape (new seeds, rates or initial variables) reuses the
compiled step.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

T_IMPORT = time.perf_counter()

import jax  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--runs", type=int, default=5)
  parser.add_argument("--steps", type=int, default=5, help="training steps per run")
  parser.add_argument("--model", default="simple_cnn_small")
  parser.add_argument("--cache", default="", help="persistent compilation cache folder")
  parser.add_argument("--mode", default="fit", choices=["fit", "population"])
  args = parser.parse_args()
  if args.cache:  # what the command line does by default (jaxcnn.train.cache)
    jax.config.update("jax_compilation_cache_dir", args.cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

  from jaxcnn.train.loop import fit  # noqa: PLC0415
  from jaxcnn.train.config import get_config  # noqa: PLC0415
  print(f"imports: {time.perf_counter() - T_IMPORT:.2f} s")

  if args.mode == "population":
    return population_runs(args)
  config = get_config()
  config.model.name = args.model
  config.num_epochs = 1
  config.steps_per_epoch = args.steps
  config.schedule.name = "constant"
  config.schedule.warmup_epochs = 0.0
  config.progress_bar = False
  config.log_every_steps = args.steps
  rows = []
  for run in range(args.runs):
    config.seed = run  # a new model each time, same shapes
    with tempfile.TemporaryDirectory() as workdir:
      t0 = time.perf_counter()
      results = fit(config, workdir)
      wall = time.perf_counter() - t0
    rows.append({"run": run, "wall_s": round(wall, 3),
                 "compile_s": round(results["compile_time_s"], 3)})
    print(json.dumps(rows[-1]))
  later = [r["wall_s"] for r in rows[1:]] or [rows[0]["wall_s"]]
  print(f"device {jax.devices()[0].platform}: first run {rows[0]['wall_s']:.2f} s, later runs "
        f"median {sorted(later)[len(later) // 2]:.2f} s ({args.steps} steps of {args.model})")


def population_runs(args: argparse.Namespace) -> None:
  """``args.runs`` short runs through one Population on one InMemory source."""
  import jax.numpy as jnp  # noqa: PLC0415

  from jaxcnn.data import preprocessing, sources  # noqa: PLC0415
  from jaxcnn.models import create_model  # noqa: PLC0415
  from jaxcnn.train.optim import make_optimizer  # noqa: PLC0415
  from jaxcnn.train.population import Population  # noqa: PLC0415
  t0 = time.perf_counter()
  source = sources.InMemory(sources.subsets("digits", {"train": 1456, "test": 179}), eval_batch_size=500)
  transform = preprocessing.fit("standardize", source.sample())
  model = create_model(args.model, num_classes=10)
  tx = make_optimizer({"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}, 0.05)
  pop = Population(model, tx, preprocess=transform)
  print(f"data to device and setup: {time.perf_counter() - t0:.2f} s")
  rows = []
  for run in range(args.runs):
    t0 = time.perf_counter()
    state, keys = pop.init([run], source.input_shape)
    _, history = pop.train(state, keys, source, num_steps=args.steps, batch_size=64)
    jnp.asarray(history["test_accuracy"]).block_until_ready()
    rows.append({"run": run, "wall_s": round(time.perf_counter() - t0, 3),
                 "compile_s": round(float(pop.compile_time_s), 3)})
    print(json.dumps(rows[-1]))
  later = sorted(r["wall_s"] for r in rows[1:]) or [rows[0]["wall_s"]]
  print(f"device {jax.devices()[0].platform}: first run {rows[0]['wall_s']:.2f} s, later runs "
        f"median {later[len(later) // 2]:.2f} s ({args.steps} steps of {args.model}, population)")


if __name__ == "__main__":
  main()
