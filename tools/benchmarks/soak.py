"""The soak section: a long DW-FCOS run twice with one seed, to show that every loss stays
finite, that memory does not grow and that the two loss curves are identical."""

import math
from pathlib import Path

from detectron2.engine import hooks

from dual_weighting.data import default_synthetic_root, ensure_synthetic

from .accuracy import run_training, scaled_schedule
from .detectors import SMALL_CONFIG, make_cfg
from .memory import process_tree_rss_mib
from .report import format_table


class RSSSampler(hooks.HookBase):
    """Records (iteration, RSS in MiB of the process tree) every ``period`` iterations and
    after the last one."""

    def __init__(self, period):
        self.period = period
        self.samples = []

    def after_step(self):
        done = self.trainer.iter + 1
        if done % self.period == 0 or done == self.trainer.max_iter:
            self.samples.append((done, process_tree_rss_mib()))


def soak_cfg(args, output_dir, extra_opts=()):
    """The demo model and solver at the soak's batch and image size, ``args.soak_iters`` long,
    then ``extra_opts`` (KEY VALUE strings).

    The learning rate follows the batch linearly from the demo's (batch 8); warm-up and lr steps
    are :func:`.accuracy.scaled_schedule`'s.
    """
    demo = make_cfg(SMALL_CONFIG, "dw")
    opts = [
        "SEED", args.soak_seed,
        "OUTPUT_DIR", str(output_dir),
        "SOLVER.IMS_PER_BATCH", args.soak_batch,
        "SOLVER.BASE_LR", demo.SOLVER.BASE_LR * args.soak_batch / demo.SOLVER.IMS_PER_BATCH,
        *scaled_schedule(args.soak_iters),
        "INPUT.MIN_SIZE_TRAIN", (args.soak_min_size,),
        "INPUT.MAX_SIZE_TRAIN", args.soak_max_size,
        "INPUT.MIN_SIZE_TEST", args.soak_min_size,
        "INPUT.MAX_SIZE_TEST", args.soak_max_size,
        "TEST.EVAL_PERIOD", 0,
    ]  # fmt: skip
    return make_cfg(SMALL_CONFIG, "dw", [str(o) for o in opts] + list(extra_opts), args.device)


def rss_growth(samples, skip_fraction=0.25):
    """RSS growth in MiB from the first sample at or after ``skip_fraction`` of the run (the
    allocator and the data loader settle in first) to the last sample."""
    last_iter = samples[-1][0]
    settled = next(rss for it, rss in samples if it >= skip_fraction * last_iter)
    return samples[-1][1] - settled


def curve_difference(a, b):
    """Largest absolute difference of two loss curves; inf if their lengths differ."""
    if len(a) != len(b):
        return math.inf
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0)


def format_soak(runs):
    """A row per run (loss, RSS and AP), then how far apart the two runs' loss curves are."""
    rows = []
    for k, r in enumerate(runs):
        samples = r["rss_mib"]
        rows.append(
            [
                f"run {k + 1}",
                str(len(r["losses"])),
                "yes" if all(map(math.isfinite, r["losses"])) else "NO",
                f"{r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}",
                f"{samples[0][1]:.0f}",
                f"{max(rss for _, rss in samples):.0f}",
                f"{rss_growth(samples):+.0f}",
                f"{r['metrics']['low']['AP']:.1f}",
                f"{r['train_s'] / 60:.1f}",
            ]
        )
    header = [
        "soak", "iters", "finite", "loss first -> last", "RSS first MiB", "RSS max MiB",
        "RSS growth MiB", "AP", "train min",
    ]  # fmt: skip
    diff = curve_difference(runs[0]["losses"], runs[1]["losses"])
    return (
        format_table(header, rows)
        + "\nRSS growth: from the sample at a quarter of the run to the last (process + "
        "data-loader workers).\n"
        + f"Same seed, loss curves: largest difference {diff:.3g} "
        + ("(identical)" if diff == 0 else "(NOT identical)")
    )


def run_soak(args, out):
    """Train DW-FCOS twice as :func:`soak_cfg` says, print the table, set ``out["soak"]``."""
    ensure_synthetic(default_synthetic_root())
    runs = []
    for k in range(2):
        cfg = soak_cfg(args, Path(args.output_dir) / "soak" / f"run{k + 1}")
        print(
            f"  run {k + 1}/2: DW, {args.soak_iters} iterations, batch {args.soak_batch}, "
            f"{args.soak_min_size}x{args.soak_max_size}, seed {args.soak_seed} ...",
            flush=True,
        )
        sampler = RSSSampler(args.soak_rss_period)
        result = run_training(cfg, extra_hooks=[sampler])
        result["rss_mib"] = sampler.samples
        runs.append(result)
    out["soak"] = runs
    print(format_soak(runs), flush=True)
