"""What a slower learner changes: rl, mix and loro on the shipped Qwen2.5-7B data as the
learner's step size shrinks (x 1, 0.3, 0.1, 0.03) and, for the tabular learner, with Q-values
starting at the worst return instead of 0 (no optimism about untried actions). loro's warm
start is run as it is now and as it was before the fix of bench/README.md (untried actions
calibrated on every return, the prior's rows drawn like any row). Paper's budgets.

    python bench/slow.py [--seeds 5] [--budget-scale 1] [--json slow.json] [--plot slow.png]
    python bench/slow.py --from slow.json --plot slow.png      # the table and figure again
"""
import json

import numpy as np

from common import PAPER_FIGURE, budget, compare_priors, loro, main, mean_std, median_steps
from common import online_steps, parser

SCALES = (1.0, 0.3, 0.1, 0.03)
# Fixed before looking at loro's numbers: every step size, and for CliffWalking's table a start
# at the worst return an episode can have (-100 at each of 200 steps).
VARIANTS = {env_id: {f"step size x {s:g}": dict(alpha_scale=s) for s in SCALES}
            for env_id in ("CliffWalking-v1", "MountainCar-v0", "Pendulum-v1")}
WARM_STARTS = {"now": {}, "previous": dict(init_untried="calibrated-all")}


def run(seeds: int, jobs: int, scale: float, log=print) -> dict:
    """{env: {variant: {warm start: results of rl, random, mix and loro}}}."""
    report = {}
    for env_id, variants in VARIANTS.items():
        report[env_id] = {}
        for name, settings in variants.items():
            priors = {label: dict(prior=loro.DEFAULT_PRIOR, **warm)
                      for label, warm in WARM_STARTS.items()}
            report[env_id][name] = compare_priors(env_id, priors, seeds, jobs,
                                                  methods=("mix", "loro"),
                                                  budget_steps=budget(env_id, scale), **settings)
            log(f"  {env_id}, {name} done")
    return report


def gain(results: dict, key: str) -> float:
    """loro's gain over rl in the mean of `key` (cumulative, or learner_phase), relative to rl."""
    rl, lo = np.mean(results["methods"]["rl"][key]), np.mean(results["methods"]["loro"][key])
    return float((lo - rl) / (abs(rl) or 1.0))


def table(report: dict) -> str:
    rows = ["| env | learner | rl | rl's steps to the threshold | mix | loro | loro's own steps "
            "to it | loro's gain over rl: whole budget | after the prior's phase |",
            "|---" * 9 + "|"]
    for env_id, by_variant in report.items():
        for name, by_start in by_variant.items():
            now, before = by_start["now"], by_start["previous"]
            m = now["methods"]
            steps = [f"{median_steps(online_steps(r, 'loro')):,.0f}" for r in (now, before)]
            gains = [" / ".join(f"{gain(r, k):+.1%}" for r in (now, before))
                     for k in ("cumulative", "learner_phase")]
            rows.append(f"| {env_id} | {name} | {mean_std(m['rl']['cumulative'])} | "
                        f"{median_steps(online_steps(now, 'rl')):,.0f} | "
                        f"{mean_std(m['mix']['cumulative'])} | {mean_std(m['loro']['cumulative'])}"
                        f" | {steps[0]} (previous {steps[1]}) | {gains[0]} | {gains[1]} |")
    return "\n".join(rows).replace("inf", "never")


def plot(report: dict):
    """loro's gain over rl against rl's cumulative cost, one line per environment (solid: the
    warm start now; dashed: before the fix), the paper's pure RL marked with a star."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=False)
    for color, (env_id, by_variant) in zip(("tab:blue", "tab:orange", "tab:green"),
                                           report.items()):
        names = [n for n in by_variant if n.startswith("step size")]
        cost = [-np.mean(by_variant[n]["now"]["methods"]["rl"]["cumulative"]) for n in names]
        for ax, key in zip(axes, ("cumulative", "learner_phase")):
            for start, style in (("now", "-o"), ("previous", ":x")):
                ax.plot(cost, [gain(by_variant[n][start], key) for n in names], style,
                        color=color, label=f"{env_id}, warm start {start}")
            for i, (n, c) in enumerate(zip(names, cost)):   # labels alternate: fewer overlaps
                ax.annotate(n.replace("step size ", ""), (c, gain(by_variant[n]["now"], key)),
                            fontsize=7, textcoords="offset points",
                            xytext=(4, 5) if i % 2 == 0 else (-4, -11))
        paper = PAPER_FIGURE[env_id]
        axes[0].plot(-paper["rl"], (paper["loro"] - paper["rl"]) / abs(paper["rl"]), "*",
                     color=color, markersize=13, markeredgecolor="k",
                     label=f"{env_id}: the paper's pure RL and LORO")
    for ax, what in zip(axes, ("over the whole budget", "after the prior's phase")):
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set(xlabel="rl's cumulative cost over the budget (−cumulative reward; log scale): "
                      "slower learner →", ylabel="loro's gain over rl", title=f"gain {what}")
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:+.0%}"))
        ax.title.set_fontsize(10)
        ax.xaxis.label.set_fontsize(8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7,
               bbox_to_anchor=(0.5, -0.02), title="labels: step-size scale; Qwen2.5-7B data, "
               "mean over seeds", title_fontsize=7)
    fig.suptitle("The slower the learner, the more a warm start pays?", fontsize=11)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig


def work(args) -> dict:
    if args.source:
        try:
            with open(args.source) as f:
                report = json.load(f)
        except (OSError, ValueError) as error:
            raise loro.LoroError(f"--from {args.source}: not a report of slow.py --json "
                                 f"({type(error).__name__})") from None
    else:
        report = run(args.seeds, args.jobs, args.budget_scale)
    print(table(report))
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        plot(report).savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")
    return report


if __name__ == "__main__":
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--plot", help="write the figure here (.png, .pdf or .svg)")
    p.add_argument("--from", dest="source", help="a report written by --json: no new runs")
    main(p, work)
