"""The paper's experiment on the paper's own data: every shipped dataset of the five environments
x rl, llm, mix, loro, random, at the paper's budgets. Prints the cumulative reward beside the
paper's own numbers, and the same runs under both curve protocols.

    python bench/paper.py [--seeds 5] [--budget-scale 1] [--json paper.json]
"""
import numpy as np

from common import PAPER_ENVS, PAPER_FIGURE, budget, compare_priors, loro, main, mean_std, parser


def run(priors_of, seeds: int, jobs: int, scale: float, log=print) -> dict:
    """{env: {prior label: results}} for the five environments; `priors_of(env_id)` gives
    {label: Config settings} of the priors to compare there."""
    report = {}
    for env_id in PAPER_ENVS:
        report[env_id] = compare_priors(env_id, priors_of(env_id), seeds, jobs,
                                        budget_steps=budget(env_id, scale))
        log(f"  {env_id} done")
    return report


def shipped(env_id: str) -> dict:
    """Every shipped dataset of an environment, by its model name."""
    return {name: dict(prior=name) for name in loro.shipped_datasets(env_id)}


def table(report: dict) -> str:
    """Markdown: cumulative reward (mean ± std over seeds) per environment and prior; mix and
    loro split into the prior's phase + the learner's phase; the paper's values beside."""
    rows = ["| env | prior | rl | llm | mix = prior's phase + after | loro = prior's phase + "
            "after | rl after the prior's phase | random | paper: RL | paper: LORO |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for env_id, by_prior in report.items():
        paper = PAPER_FIGURE[env_id]
        for name, r in by_prior.items():
            m = r["methods"]
            split = {k: f"{mean_std(m[k]['cumulative'])} = {np.mean(m[k]['prior_phase']):,.0f} "
                        f"+ {np.mean(m[k]['learner_phase']):,.0f}" for k in ("mix", "loro")}
            paper_loro = paper["loro"] if name == loro.DEFAULT_PRIOR else ""
            rows.append(f"| {env_id} | {name} | {mean_std(m['rl']['cumulative'])} | "
                        f"{np.mean(m['llm']['cumulative']):,.0f} | {split['mix']} | "
                        f"{split['loro']} | {mean_std(m['rl']['learner_phase'])} | "
                        f"{np.mean(m['random']['cumulative']):,.0f} | {paper['rl']:,} | "
                        f"{paper_loro if paper_loro == '' else format(paper_loro, ',')} |")
    return "\n".join(rows)


def protocols(report: dict, prior: str = loro.DEFAULT_PRIOR) -> str:
    """Markdown: loro against rl over the whole budget, under the paper's protocol (the greedy
    policy on a separate environment) and over the episodes the agent played."""
    rows = ["| env | greedy policy (the paper's protocol) | episodes played (exploration "
            "included) |", "|---|---|---|"]
    for env_id, by_prior in report.items():
        if prior not in by_prior:
            continue
        m, cells = by_prior[prior]["methods"], []
        for key in ("cumulative", "earned_cumulative"):
            rl, lo = np.mean(m["rl"][key]), np.mean(m["loro"][key])
            cells.append(f"loro {lo:,.0f}, rl {rl:,.0f} ({(lo - rl) / (abs(rl) or 1):+.1%})")
        rows.append(f"| {env_id} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


def work(args) -> dict:
    report = run(shipped, args.seeds, args.jobs, args.budget_scale)
    print(table(report) + "\n\n" + protocols(report))
    return report


if __name__ == "__main__":
    main(parser(__doc__.split("\n\n")[0]), work)
