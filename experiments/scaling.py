"""EfficientNet compound scaling on a proxy task (Tan & Le 2019, section 3.3, Figure 3).

  python experiments/scaling.py [--quick] [--config experiments/configs/scaling.py[:quick]]
                                [--config.key=value ...] [--workdir DIR]

Grid-searches (alpha, beta, gamma) with alpha * beta**2 * gamma**2 ~ 2 at phi = 1
(jaxcnn.search.scaling.search), scales the winner by phi = 0 .. max_phi and compares it with
width-, depth- and resolution-only scaling at the same multiply-adds (scale_up). Writes
scaling.md, results.json and scaling.png to runs/scaling/ (runs/scaling_quick/ with --quick).
"""

import os
import sys


from jaxcnn.search import plots, scaling
from jaxcnn.studies import common


def run(config, workdir: str) -> scaling.Results:
  results = scaling.study(config)
  plot = os.path.abspath(os.path.join(workdir, "scaling.png"))
  plots.plot_scaling(results.scaling, plot, dpi=int(config.dpi), title=(
      f"{config.dataset}: scaling the proxy by phi with (alpha, beta, gamma) = "
      f"{tuple(round(c, 3) for c in results.chosen)}"))
  report = common.Report("EfficientNet compound scaling on a proxy task")
  report.text(
      f"Data: {config.dataset}, {config.num_train} training / {config.num_val} validation "
      f"images, resized (bilinear, antialiased) to each model's resolution; base resolution "
      f"{config.base_resolution}. Network: the zoo's EfficientNet with stages "
      f"{tuple(tuple(s) for s in config.stages)} at width {config.base_width} (channels rounded "
      f"to multiples of 8, repeats rounded up), no dropout. Training: Adam "
      f"{config.learning_rate}, {config.num_steps} steps of batch {config.batch_size}, "
      f"{config.num_seeds} seed(s) per model. Multiply-adds: jaxcnn.models.analysis.flops.",
      f"Grid: step {config.step}, |alpha beta^2 gamma^2 - 2| <= {config.tol}: "
      f"{results.num_feasible} feasible triples, {len(results.search)} scored"
      + (" (evenly spaced subset, the paper's triple included)." if
         len(results.search) < results.num_feasible else "."))
  headers = ["rank", "alpha", "beta", "gamma", "a*b^2*g^2", "resolution", "MACs", "params",
             "val accuracy", "std"]
  report.table([[r["rank"], r["alpha"], r["beta"], r["gamma"], r["constraint"], r["resolution"],
                 int(r["macs"]), r["params"], r["accuracy"], r["accuracy_std"]]
                for r in results.search], headers, title="Step 1: the grid at phi = 1")
  distinct = len({(r["macs"], r["resolution"]) for r in results.search})
  report.text(
      f"**Measured.** Best triple {results.chosen}; the paper's (1.2, 1.1, 1.15) ranks "
      f"{results.paper_rank or 'not scored'} of {len(results.search)}. The scored triples "
      f"build {distinct} distinct (network, resolution) pairs: at phi = 1 the depth rounding "
      f"(ceil of alpha * repeats) gives every alpha in (1, 1.5] the same network when the "
      f"repeats are 1 and 2, and channels move in steps of 8.")
  report.table([[r["method"], r["phi"], r["depth_mult"], r["width_mult"], r["resolution"],
                 int(r["macs"]), r["macs_ratio"], r["nominal_ratio"], r["params"],
                 r["accuracy"], r["accuracy_std"]] for r in results.scaling],
               ["method", "phi", "depth x", "width x", "resolution", "MACs", "MACs / base",
                "(a b^2 g^2)^phi", "params", "val accuracy", "std"],
               title="Step 2: scaling by phi, and single-dimension scaling at equal MACs")
  report.figure(plot, "Accuracy against multiply-adds, one line per scaling method.")
  report.section("Why the search on a small proxy may land elsewhere than (1.2, 1.1, 1.15)")
  report.text(
      "The paper searched on ImageNet at 224x224 with B0 (16 blocks), where the rounding of "
      "depth and width is fine-grained. On a tiny proxy, depth rounds up to whole blocks and "
      "width to multiples of 8, so many triples build the same network and the grid's "
      "resolution changes dominate; a short training budget favours networks that fit fast, "
      "and the differences between triples are often within seed noise (see the std column). "
      "The measured multiply-adds ratio per phi exceeds (alpha beta^2 gamma^2)^phi for the same "
      "rounding reasons (ceil of the repeats).")
  report.text(f"Wall time: {results.seconds:.0f} s.")
  report.write(os.path.join(workdir, "scaling.md"))
  common.save_results(results, workdir)
  return results


if __name__ == "__main__":
  sys.exit(common.study_main(
      run, os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "scaling.py"),
      sys.argv[1:]))
