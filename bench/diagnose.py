"""Why the warm start was slow on CliffWalking: the shortest path, cell by cell, after the
offline pre-training, for untried actions calibrated on every return ("calibrated-all", loro's
previous default) and on the returns of episodes that terminated ("calibrated", the default).

For each seed's window of a shipped dataset: on each cell of the shortest path, the optimal
action, whether the data tried it there, the prior's mean return-to-go from the cell over every
visit and over the visits of episodes that terminated (the others were cut by the clock: their
returns are censored), V*, and for each start the optimal action's value against the best value
in the cell after pre-training (an optimal action below the best is one the greedy policy will
not take; only epsilon tries it). Then the greedy return from the start.

    python bench/diagnose.py [--prior qwen2.5-7b] [--seeds 5] [--json diagnose.json]
"""
import numpy as np

from common import loro, main, parser

MODES = ("calibrated-all", "calibrated")


def shortest_path(env_id: str) -> list:
    """(cell, optimal action) from the start to the goal, by value iteration."""
    q = loro.value_iteration(env_id)
    env, path = loro.make_env(env_id), []
    cell, _ = env.reset(seed=0)
    for _ in range(100):
        action = int(q[cell].argmax())
        path.append((int(cell), action))
        cell, _, terminated, _, _ = env.step(action)
        if terminated:
            return path
    raise AssertionError("no path to the goal")


def pretrained(prior: loro.Dataset, seed: int, mode: str) -> loro.TabularQ:
    """The learner of `loro` for this seed after step 2, with untried actions started by `mode`."""
    cfg = loro.Config(init_untried=mode).resolved()
    spec = loro.env_spec(cfg.env_id)
    rng = np.random.default_rng(loro.stream_seed(seed, "learner"))
    learner = loro.make_learner(spec, rng)
    loro.warm_start(learner, prior, cfg, spec, rng)
    return learner


def diagnose(prior_name: str, seeds: int) -> list:
    env_id = "CliffWalking-v1"
    spec, v_star = loro.env_spec(env_id), loro.value_iteration(env_id).max(axis=1)
    cfg = loro.Config(env_id=env_id, prior=prior_name, seeds=seeds).resolved()
    priors, _ = loro.make_priors(cfg, spec, list(range(seeds)), loro.QUIET)
    reports = []
    for seed, prior in priors.items():
        tried = np.zeros((48, 4), bool)
        tried[prior.obs, prior.actions] = True
        g, censored = prior.returns_to_go(spec.gamma), prior.censored()
        learners = {mode: pretrained(prior, seed, mode) for mode in MODES}
        rows = []
        for cell, action in shortest_path(env_id):
            here = prior.obs == cell
            ended = here & ~censored
            rows.append(dict(cell=divmod(cell, 12), action=spec.actions[action][0],
                             tried=bool(tried[cell, action]), visits=int(here.sum()),
                             v_mu=float(g[here].mean()) if here.any() else None,
                             v_mu_ended=float(g[ended].mean()) if ended.any() else None,
                             v_star=float(v_star[cell]),
                             **{m: (float(l.q[cell, action]), float(l.q[cell].max()))
                                for m, l in learners.items()}))
        greedy = {m: loro.evaluate(l, loro.make_env(env_id), 1, np.random.default_rng(0))
                  for m, l in learners.items()}
        reports.append(dict(seed=seed, window=prior.meta["window"], steps=len(prior),
                            goals=int(prior.terminated.sum()), rows=rows, greedy=greedy))
    return reports


def table(report: dict) -> str:
    w = report["window"]
    wrap = next((i for i in range(1, len(w)) if w[i] < w[i - 1]), len(w))   # a window may wrap
    runs = [f"{part[0]}-{part[-1]}" for part in (w[:wrap], w[wrap:]) if part]
    lines = [f"seed {report['seed']}: episodes {' and '.join(runs)}, {report['steps']:,} steps, "
             f"{report['goals']} of {len(w)} reach the goal; greedy return after pre-training: "
             + ", ".join(f"{m} {r:g}" for m, r in report["greedy"].items()), "",
             "| cell (row, col) | optimal action | tried by the data | V_mu: every return | "
             "V_mu: returns of terminated episodes | V* | "
             + " | ".join(f"{m}: Q(optimal) / max Q" for m in MODES) + " |",
             "|---" * (6 + len(MODES)) + "|"]
    for r in report["rows"]:
        v_mu = ["-" if v is None else f"{v:,.0f}" for v in (r["v_mu"], r["v_mu_ended"])]
        cells = [f"{r[m][0]:,.1f} / {r[m][1]:,.1f}" + (" (not greedy)" if r[m][0] < r[m][1] else "")
                 for m in MODES]
        lines.append(f"| {r['cell']} | {r['action']} | {'yes' if r['tried'] else 'no'} | "
                     f"{v_mu[0]} | {v_mu[1]} | {r['v_star']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def work(args) -> list:
    reports = diagnose(args.prior, args.seeds)
    print("\n\n".join(table(r) for r in reports))
    return reports


if __name__ == "__main__":
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--prior", default=loro.DEFAULT_PRIOR, help="a shipped CliffWalking dataset")
    main(p, work)
