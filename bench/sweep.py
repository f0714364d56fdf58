"""loro's gain over rl as the prior gets worse: the stand-in's noise from 0 (its rules of thumb)
to 1 (uniformly random), and optionally recorded datasets, in one environment at the paper's
budget. Gain = (cumulative reward of loro - that of rl) / |that of rl|, per seed.

    python bench/sweep.py [--env CliffWalking-v1] [--noises 0,0.25,0.5,0.75,1]
                          [--datasets A.npz,B.npz] [--json sweep.json] [--plot sweep.png]
"""
import dataclasses

import numpy as np

from common import PAPER_ENVS, budget, loro, main, parser


def prior_quality_sweep(cfg: loro.Config, noises=(0.0, 0.25, 0.5, 0.75, 1.0), datasets=(),
                        log=print) -> dict:
    """rl once, then loro for each prior; one row per prior, with its mean return, its coverage
    (grid games: the first seed's window) and the gain over rl, mean ± std over seeds."""
    base = dataclasses.replace(cfg, methods=("rl",), dataset=None, prior=None)
    rl = np.array(loro.run_experiment(base, log=loro.QUIET)["methods"]["rl"]["cumulative"])
    settings = [dict(prior_noise=n, dataset=None) for n in noises]
    settings += [dict(dataset=path, prior_noise=None) for path in datasets]
    spec, rows = loro.env_spec(cfg.env_id), []
    for setting in settings:
        run = dataclasses.replace(cfg, methods=("loro",), prior=None, **setting)
        results = loro.run_experiment(run, log=loro.QUIET)
        cumulative = np.array(results["methods"]["loro"]["cumulative"])
        cov = None
        if spec.learner == "tabular":
            priors, _ = loro.make_priors(run.resolved(), spec, [cfg.seed], loro.QUIET)
            cov = loro.coverage(priors[cfg.seed], cfg.env_id)["state_action"]
        gain = (cumulative - rl) / np.abs(rl).clip(1e-9)
        row = dict(source=results["prior"]["source"], noise=setting.get("prior_noise"),
                   prior_return=float(np.mean(results["prior"]["mean_return"])), coverage=cov,
                   gain_mean=float(gain.mean()), gain_std=loro.sample_std(gain),
                   loro=cumulative.tolist(), rl=rl.tolist())
        rows.append(row)
        log(f"  {row['source']}: prior return {row['prior_return']:.2f}, coverage "
            f"{'n/a' if cov is None else format(cov, '.2f')}, gain over rl "
            f"{row['gain_mean']:+.1%} ± {row['gain_std']:.1%}")
    return dict(env=cfg.env_id, budget_steps=cfg.resolved().budget_steps, rows=rows)


def plot_sweep(sweep: dict):
    """The gain against the prior's own return, and against its coverage (grid games). Each
    point is one prior: a stand-in noise level (labelled with it) or a recorded dataset."""
    import matplotlib.pyplot as plt
    rows = sweep["rows"]
    xs = [("prior_return", "the prior's mean episode return")]
    if all(r["coverage"] is not None for r in rows):
        xs.append(("coverage", "coverage of the optimal policy's state-actions"))
    fig, axes = plt.subplots(1, len(xs), figsize=(5 * len(xs), 4), squeeze=False)
    labels = []
    for r in rows:                               # a noise level, or the file's model name
        name = r["source"].split(":")[0].replace(f"{sweep['env']}_", "").replace(".npz", "")
        labels.append(f"noise {r['noise']:g}" if r["noise"] is not None else name)
    for ax, (key, xlabel) in zip(axes[0], xs):
        x = np.array([r[key] for r in rows])
        gain = np.array([r["gain_mean"] for r in rows])
        ax.errorbar(x, gain, yerr=[r["gain_std"] for r in rows], fmt="o", color="tab:red",
                    capsize=3)
        span = np.ptp(x) or 1.0
        for i in range(len(rows)):               # labels of points at about one x: stacked
            higher = np.sum((np.abs(x - x[i]) < 0.04 * span) & (gain > gain[i]))
            ax.annotate(labels[i], (x[i], gain[i]), fontsize=7, textcoords="offset points",
                        xytext=(6, 2 - 10 * higher), bbox=dict(fc="white", ec="none", pad=0.5))
        ax.axhline(0, color="k", lw=0.8)
        ax.margins(x=0.12, y=0.18)               # room for the labels at the edges
        ax.set(xlabel=xlabel, ylabel="gain in cumulative reward over RL")
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:+.0%}"))
    fig.suptitle(f"{sweep['env']}: LORO's gain over RL for priors of different quality, budget "
                 f"{sweep['budget_steps']:,}; bars: ±1 std over seeds", fontsize=10)
    fig.tight_layout()
    return fig


def work(args) -> dict:
    try:
        noises = tuple(float(x) for x in args.noises.split(",") if x.strip())
    except ValueError:
        noises = ()
    if not noises or not all(0 <= noise <= 1 for noise in noises):
        raise loro.LoroError(f"--noises takes comma-separated numbers from 0 to 1, e.g. 0,0.5,1; "
                             f"got {args.noises!r}")
    datasets = tuple(x for x in (args.datasets or "").split(",") if x.strip())
    for path in datasets:
        loro.load_dataset(path, args.env)        # fail now, not after an hour of runs
    cfg = loro.Config(env_id=args.env, seeds=args.seeds, jobs=args.jobs,
                      budget_steps=budget(args.env, args.budget_scale)).check()
    sweep = prior_quality_sweep(cfg, noises, datasets)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        plot_sweep(sweep).savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")
    return sweep


if __name__ == "__main__":
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--env", default="CliffWalking-v1", choices=PAPER_ENVS, help="the environment")
    p.add_argument("--noises", default="0,0.25,0.5,0.75,1", help="the stand-in's noise levels")
    p.add_argument("--datasets", help="recorded datasets to add, comma-separated")
    p.add_argument("--plot", help="write the figure here (.png, .pdf or .svg)")
    main(p, work)
