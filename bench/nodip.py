"""Is the warm start ever worse than no data at all? For every shipped dataset, the CliffWalking
variants of bench/variants.py and the good stand-in on CliffWalking and MountainCar: loro
against rl after the prior's phase, two ways, each with an allowance (the larger of rl's std
over seeds and 3% of |rl's mean|):

- aligned: loro's sum over the points after the prior's phase against rl's sum over its FIRST
  as many points, each learner counted from its own first step (the criterion that matters: a
  warm start must not leave a learner worse off than starting with no data);
- same points: both sums over the points after the prior's phase.

Then each learner's own steps until its greedy policy first reaches the threshold (rl from
step 0, mix and loro from the end of the prior's episodes), the median and per seed.

    python bench/nodip.py [--seeds 5] [--budget-scale 1] [--alpha-scale 1]
                          [--exploration optimistic] [--json nodip.json]
"""
import tempfile

import numpy as np

from common import PAPER_ENVS, budget, compare_priors, loro, main, median_steps
from common import parser
from variants import write_variants

STAND_INS = [(env_id, noise) for env_id in ("CliffWalking-v1", "MountainCar-v0")
             for noise in (0.0, 0.2)]


def run(seeds: int, jobs: int, scale: float, log=print, **settings) -> dict:
    """{env: {prior label: results of rl, mix and loro}}; `settings`: Config fields for all."""
    report, folder = {}, tempfile.mkdtemp()
    variants = write_variants(folder)
    for env_id in PAPER_ENVS:
        priors = {name: dict(prior=name) for name in loro.shipped_datasets(env_id)}
        if env_id == "CliffWalking-v1":
            priors.update({label: dict(dataset=path) for label, path in variants.items()})
        priors.update({f"scripted({noise:g})": dict(prior_noise=noise)
                       for e, noise in STAND_INS if e == env_id})
        report[env_id] = compare_priors(env_id, priors, seeds, jobs, methods=("mix", "loro"),
                                        budget_steps=budget(env_id, scale), **settings)
        log(f"  {env_id} done")
    return report


def allowance(rl: np.ndarray) -> float:
    return max(loro.sample_std(rl), 0.03 * abs(rl.mean()))


def verdicts(report: dict) -> list:
    """One row per prior: both criteria, and the steps to the threshold."""
    rows = []
    for env_id, by_prior in report.items():
        for name, r in by_prior.items():
            m, points = r["methods"], np.array(r["checkpoints"])
            after = [int((points > steps).sum()) for steps in r["prior"]["steps"]]
            loro_after = np.array(m["loro"]["learner_phase"])
            rl_first = np.array([sum(c[:n]) for c, n in zip(m["rl"]["curves"], after)])
            rl_same = np.array(m["rl"]["learner_phase"])
            rows.append(dict(
                env=env_id, prior=name, loro=loro_after.mean(), after_points=after,
                rl_first=rl_first.mean(), aligned_allowance=allowance(rl_first),
                aligned_dip=bool(loro_after.mean() < rl_first.mean() - allowance(rl_first)),
                rl_same=rl_same.mean(), same_allowance=allowance(rl_same),
                same_dip=bool(loro_after.mean() < rl_same.mean() - allowance(rl_same)),
                loro_per_seed=loro_after.tolist(),
                steps={k: m[k]["own_steps_to_threshold"] for k in ("rl", "mix", "loro")},
                rl_whole=np.mean(m["rl"]["cumulative"]),
                loro_whole=np.mean(m["loro"]["cumulative"])))
    return rows


def table(rows: list) -> str:
    def seeds(values):
        return ", ".join("never" if v is None else f"{v:,.0f}" for v in values)

    lines = ["| env | prior | loro after the prior's phase | aligned: rl's first as many "
             "points (allowance) | a dip? | same points: rl (allowance) | a dip? | loro per "
             "seed | own steps to the threshold, median: rl / mix / loro | per seed: rl; loro "
             "| whole budget: rl / loro |", "|---" * 11 + "|"]
    for r in rows:
        medians = " / ".join(f"{median_steps(r['steps'][k]):,.0f}" for k in ("rl", "mix", "loro"))
        lines.append(
            f"| {r['env']} | {r['prior']} | {r['loro']:,.0f} | {r['rl_first']:,.0f} "
            f"({r['aligned_allowance']:,.0f}) | {'yes' if r['aligned_dip'] else 'no'} | "
            f"{r['rl_same']:,.0f} ({r['same_allowance']:,.0f}) | "
            f"{'yes' if r['same_dip'] else 'no'} | {seeds(r['loro_per_seed'])} | {medians} | "
            f"{seeds(r['steps']['rl'])}; {seeds(r['steps']['loro'])} | "
            f"{r['rl_whole']:,.0f} / {r['loro_whole']:,.0f} |")
    return "\n".join(lines).replace("inf", "never")


def work(args) -> dict:
    report = run(args.seeds, args.jobs, args.budget_scale, alpha_scale=args.alpha_scale,
                 exploration=args.exploration)
    rows = verdicts(report)
    print(f"exploration: {args.exploration}, step size x {args.alpha_scale:g}")
    print(table(rows))
    return dict(rows=rows, report=report)


if __name__ == "__main__":
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--alpha-scale", type=float, default=1.0, help="x every learner's step size")
    p.add_argument("--exploration", choices=loro.EXPLORATIONS, default="optimistic",
                   help="how the Q-learners explore (loro.py §4)")
    main(p, work)
