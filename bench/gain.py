"""When does the warm start pay? loro's gain over rl for each way of exploring (loro.py §4:
"optimistic", loro's learners; "undirected", the paper's DoubleDQN's epsilon-greedy) and each
prior (the shipped Qwen2.5-7B and 32B data, and the stand-in at noise 0.2 as a good prior), in
the paper's five environments at the paper's budgets.

Two gains, each per seed (loro and rl of one seed share its random streams), mean ± std:
- whole budget: (CR_loro - CR_rl) / |CR_rl|, CR the cumulative reward (the paper's metric);
- own steps: loro's sum over the points after the prior's phase against rl's sum over its
  first as many points, each learner counted from its own first step.
And, per prior, how many of the seeds' windows hold an episode that reaches the goal (or, for
CartPole and Pendulum, the threshold; a Pendulum episode cut at 50 steps is scaled to 200).

    python bench/gain.py [--seeds 5] [--budget-scale 1] [--json gain.json] [--plot gain.png]
    python bench/gain.py --from gain.json --plot gain.png     # the table and figure again
"""
import json

import numpy as np

from common import PAPER_ENVS, PAPER_FIGURE, budget, compare_priors, loro, main, parser

PRIORS = {"qwen2.5-7b": dict(prior="qwen2.5-7b"), "qwen2.5-32b": dict(prior="qwen2.5-32b"),
          "stand-in (noise 0.2)": dict(prior=loro.STAND_IN, prior_noise=0.2)}
# Fixed before any of loro's numbers were seen: the settings for "undirected" (loro.py
# §4), every other setting loro's default, the same for every prior.


def run(seeds: int, jobs: int, scale: float, log=print) -> dict:
    """{exploration: {env: {prior: results of rl and loro}}}."""
    report = {}
    for exploration in loro.EXPLORATIONS:
        report[exploration] = {}
        for env_id in PAPER_ENVS:
            if loro.env_spec(env_id).learner == "actor_critic" and exploration != "optimistic":
                report[exploration][env_id] = report["optimistic"][env_id]   # the same (§4)
                continue
            priors = {k: v for k, v in PRIORS.items()
                      if v["prior"] == loro.STAND_IN or v["prior"] in loro.shipped_datasets(env_id)}
            report[exploration][env_id] = compare_priors(
                env_id, priors, seeds, jobs, methods=("loro",), exploration=exploration,
                budget_steps=budget(env_id, scale))
            log(f"  {exploration}, {env_id} done")
    return report


def reaches(env_id: str, dataset: loro.Dataset) -> bool:
    """Does a window hold an episode that reaches the goal, or the threshold?"""
    spec, returns = loro.env_spec(env_id), dataset.episode_returns()
    _, lengths = np.unique(dataset.episode, return_counts=True)
    last = np.r_[dataset.episode[1:] != dataset.episode[:-1], True]
    if env_id in ("CliffWalking-v1", "MountainCar-v0"):
        return bool(dataset.terminated.any())
    if env_id == "FrozenLake-v1":
        return bool((dataset.terminated & (dataset.rewards > 0) & last).any())
    scaled = returns * (spec.max_steps / lengths if env_id == "Pendulum-v1" else 1)
    return bool((scaled >= spec.threshold).any())


def windows_reaching(env_id: str, overrides: dict, seeds: int, scale: float) -> int:
    """How many of the seeds' prior windows hold an episode that reaches the goal."""
    cfg = loro.Config(env_id=env_id, seeds=seeds, budget_steps=budget(env_id, scale),
                      **overrides).resolved()
    priors, _ = loro.make_priors(cfg, loro.env_spec(env_id), list(range(seeds)), loro.QUIET)
    return sum(reaches(env_id, p) for p in priors.values())


def gains(results: dict) -> dict:
    """Per seed: the two gains of loro over rl (see the header)."""
    m, points = results["methods"], np.array(results["checkpoints"])
    rl, lo = np.array(m["rl"]["cumulative"]), np.array(m["loro"]["cumulative"])
    after = [int((points > steps).sum()) for steps in results["prior"]["steps"]]
    own = np.array(m["loro"]["learner_phase"])
    rl_first = np.array([sum(c[:n]) for c, n in zip(m["rl"]["curves"], after)])
    return dict(whole=((lo - rl) / np.abs(rl).clip(1e-9)).tolist(),
                own=((own - rl_first) / np.abs(rl_first).clip(1e-9)).tolist(),
                rl=rl.tolist(), loro=lo.tolist())


def summarize(report: dict, seeds: int, scale: float) -> list:
    rows = []
    for exploration, by_env in report.items():
        for env_id, by_prior in by_env.items():
            for prior, results in by_prior.items():
                g = gains(results)
                rows.append(dict(exploration=exploration, env=env_id, prior=prior, **g,
                                 reaching=windows_reaching(env_id, PRIORS[prior], seeds, scale),
                                 seeds=len(g["rl"]), budget_scale=scale))
    return rows


def pm(values) -> str:
    return f"{np.mean(values):+.0%} ± {loro.sample_std(values):.0%}"


def table(rows: list) -> str:
    lines = ["| exploration | env | prior | windows reaching the goal | rl | loro | gain: whole "
             "budget | gain: own steps |", "|---" * 8 + "|"]
    for r in rows:
        lines.append(f"| {r['exploration']} | {r['env']} | {r['prior']} | {r['reaching']}/"
                     f"{r['seeds']} | {np.mean(r['rl']):,.0f} | {np.mean(r['loro']):,.0f} | "
                     f"{pm(r['whole'])} | {pm(r['own'])} |")
    return "\n".join(lines)


PRIOR_MARKERS = {"qwen2.5-7b": "o", "qwen2.5-32b": "s", "stand-in (noise 0.2)": "^"}
EXPLORATION_COLORS = {"optimistic": "tab:blue", "undirected": "tab:red"}


LIMITS = (-2.0, 1.2)                             # the y axis; a mean below is marked at the edge


def plot(rows: list):
    """One panel per gain; environments along x, each labelled with how many seeds' windows of
    each prior reach the goal; a marker per prior, a colour per exploration; bars: ±1 std over
    seeds. A mean below the axis is drawn at its edge, with its value."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    offsets = {(e, p): 0.11 * (2 * i + j - 2.5) for i, e in enumerate(EXPLORATION_COLORS)
               for j, p in enumerate(PRIOR_MARKERS)}
    labels = []
    for env_id in PAPER_ENVS:
        counts = {r["prior"]: r["reaching"] for r in rows if r["env"] == env_id}
        seeds = rows[0]["seeds"]
        labels.append(env_id.split("-")[0] + "\ngoal: " + ", ".join(
            f"{counts[p]}" for p in PRIOR_MARKERS if p in counts) + f" of {seeds}")
    for ax, key, title in zip(axes, ("whole", "own"), (
            "over the whole budget (the paper's metric)",
            "after the prior's phase, against rl's first as many points")):
        for r in rows:
            x = PAPER_ENVS.index(r["env"]) + offsets[(r["exploration"], r["prior"])]
            mean, color = np.mean(r[key]), EXPLORATION_COLORS[r["exploration"]]
            ax.errorbar(x, max(mean, LIMITS[0]), yerr=loro.sample_std(r[key]), capsize=2,
                        color=color, marker=PRIOR_MARKERS[r["prior"]], markersize=6, ls="none")
            if mean < LIMITS[0]:
                ax.annotate(f"mean {mean:+.0%}", (x, LIMITS[0]), textcoords="offset points",
                            xytext=(5, 4), ha="left", fontsize=7, color=color)
        if key == "whole":                       # the paper's LORO against its DoubleDQN (7B)
            paper = [PAPER_FIGURE[e] for e in PAPER_ENVS]
            ax.plot(range(len(PAPER_ENVS)), [(p["loro"] - p["rl"]) / abs(p["rl"]) for p in paper],
                    "k*", markersize=11, label="the paper: LORO against its pure RL (7B data)")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylim(*LIMITS)
        ax.set_xticks(range(len(PAPER_ENVS)), labels, fontsize=8)
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:+.0%}"))
        ax.set_title(f"loro's gain over rl {title}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("gain in cumulative reward, relative to rl")
    handles = [plt.Line2D([], [], color=c, marker="o", ls="none", label=f"{e} exploration")
               for e, c in EXPLORATION_COLORS.items()]
    handles += [plt.Line2D([], [], color="gray", marker=m, ls="none", label=f"prior: {p}")
                for p, m in PRIOR_MARKERS.items()]
    handles += axes[0].get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9,
               title=f"mean ± 1 std over {rows[0]['seeds']} seeds, budget x "
                     f"{rows[0]['budget_scale']:g} of the paper's; under each game, how many "
                     f"seeds' windows of each prior (7B, 32B, stand-in) hold an episode that "
                     f"reaches the goal; Pendulum's actor-critic is the same under both "
                     f"explorations", title_fontsize=8)
    fig.suptitle("When does the warm start pay? loro against rl, by exploration and prior",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.15, 1, 1))
    return fig


def work(args) -> dict:
    if args.source:
        try:
            with open(args.source) as f:
                rows = json.load(f)["rows"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise loro.LoroError(f"--from {args.source}: not a report of gain.py --json "
                                 f"({type(error).__name__})") from None
        report = None
    else:
        report = run(args.seeds, args.jobs, args.budget_scale)
        rows = summarize(report, args.seeds, args.budget_scale)
    print(table(rows))
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        plot(rows).savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")
    return dict(rows=rows, report=report)


if __name__ == "__main__":
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--plot", help="write the figure here (.png, .pdf or .svg)")
    p.add_argument("--from", dest="source", help="a report written by --json: no new runs")
    main(p, work)
