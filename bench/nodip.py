"""Does the warm start ever slow learning down? For every shipped dataset (and the good
stand-in on CliffWalking and MountainCar): loro against rl after the prior's phase, over the same
points, within an allowance (the larger of rl's std over seeds and 3% of its mean); and each
learner's own steps until its greedy policy first reaches the threshold, seed by seed.

    python bench/nodip.py [--seeds 5] [--budget-scale 1] [--alpha-scale 1] [--json nodip.json]
"""
import numpy as np

from common import PAPER_ENVS, budget, compare_priors, loro, main, median_steps, online_steps
from common import parser

STAND_INS = [(env_id, noise) for env_id in ("CliffWalking-v1", "MountainCar-v0")
             for noise in (0.0, 0.2)]


def run(seeds: int, jobs: int, scale: float, alpha_scale: float = 1.0, log=print) -> dict:
    """{env: {prior label: results of rl, mix and loro}}."""
    report = {}
    for env_id in PAPER_ENVS:
        priors = {name: dict(prior=name) for name in loro.shipped_datasets(env_id)}
        priors.update({f"scripted({noise:g})": dict(prior_noise=noise)
                       for e, noise in STAND_INS if e == env_id})
        report[env_id] = compare_priors(env_id, priors, seeds, jobs, methods=("mix", "loro"),
                                        budget_steps=budget(env_id, scale),
                                        alpha_scale=alpha_scale)
        log(f"  {env_id} done")
    return report


def verdicts(report: dict) -> list:
    """One row per prior: after the prior's phase, and the steps to the threshold."""
    rows = []
    for env_id, by_prior in report.items():
        for name, r in by_prior.items():
            m = r["methods"]
            rl, lo = np.array(m["rl"]["learner_phase"]), np.array(m["loro"]["learner_phase"])
            allowance = max(loro.sample_std(rl), 0.03 * abs(rl.mean()))
            steps = {k: online_steps(r, k) for k in ("rl", "mix", "loro")}
            rows.append(dict(env=env_id, prior=name, rl=rl.mean(), loro=lo.mean(),
                             gap=lo.mean() - rl.mean(), allowance=allowance,
                             dip=bool(lo.mean() < rl.mean() - allowance), steps=steps,
                             rl_whole=np.mean(m["rl"]["cumulative"]),
                             loro_whole=np.mean(m["loro"]["cumulative"])))
    return rows


def table(rows: list) -> str:
    def seeds(values):
        return ", ".join("never" if v is None else f"{v:,}" for v in values)

    lines = ["| env | prior | rl after the prior's phase | loro after it | gap (allowance) | "
             "a dip? | own steps to the threshold, median: rl / mix / loro | per seed: rl; "
             "loro | whole budget: rl / loro |", "|---" * 9 + "|"]
    for r in rows:
        medians = " / ".join(f"{median_steps(r['steps'][k]):,.0f}" for k in ("rl", "mix", "loro"))
        lines.append(f"| {r['env']} | {r['prior']} | {r['rl']:,.0f} | {r['loro']:,.0f} | "
                     f"{r['gap']:+,.0f} ({r['allowance']:,.0f}) | {'yes' if r['dip'] else 'no'} "
                     f"| {medians} | {seeds(r['steps']['rl'])}; {seeds(r['steps']['loro'])} | "
                     f"{r['rl_whole']:,.0f} / {r['loro_whole']:,.0f} |")
    return "\n".join(lines).replace("inf", "never")


def work(args) -> dict:
    report = run(args.seeds, args.jobs, args.budget_scale, args.alpha_scale)
    rows = verdicts(report)
    print(table(rows))
    return dict(rows=rows, report=report)


if __name__ == "__main__":
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--alpha-scale", type=float, default=1.0, help="x every learner's step size")
    main(p, work)
