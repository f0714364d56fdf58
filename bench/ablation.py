"""What each ingredient of loro's warm start does: rl, mix and loro with each ingredient switched
in turn, on the Qwen2.5-7B data of the five environments and on the stand-in at noise 0 and 0.2,
scored after the prior's phase (the points where every method is a learner; rl also over its
own first as many points); and, seed by seed, each learner's own steps until its greedy policy
first reaches the threshold. Either way of exploring (loro.py §4).

    python bench/ablation.py [--seeds 5] [--budget-scale 1] [--alpha-scale 1] [--env ENV]
                             [--exploration optimistic] [--json ablation.json]
"""
from common import PAPER_ENVS, budget, compare_priors, loro, main, mean_std, median_steps
from common import parser

VARIANTS = {                                     # label: the Config settings of one loro variant
    "loro": {},
    "no offline updates": dict(pretrain_updates=0),
    "2,000 offline updates": dict(pretrain_updates=2000),
    "untried: keep": dict(init_untried="keep"),
    "untried: pessimistic": dict(init_untried="pessimistic"),
    "prior share 0.5": dict(prior_share=0.5),
}
PRIORS = [(env_id, loro.DEFAULT_PRIOR) for env_id in PAPER_ENVS] + \
    [(env_id, noise) for env_id in ("CliffWalking-v1", "MountainCar-v0") for noise in (0.0, 0.2)]


def run(seeds: int, jobs: int, scale: float, alpha_scale: float = 1.0, envs=PAPER_ENVS,
        exploration: str = "optimistic", log=print) -> dict:
    """{"env prior": {"rl", "mix", variant...: that method's results}}."""
    report = {}
    for env_id, prior in [(e, p) for e, p in PRIORS if e in envs]:
        source = dict(prior=prior) if isinstance(prior, str) else dict(prior_noise=prior)
        label = prior if isinstance(prior, str) else f"scripted({prior:g})"
        variants = {name: dict(source, **v) for name, v in VARIANTS.items()}
        common = dict(budget_steps=budget(env_id, scale), alpha_scale=alpha_scale,
                      exploration=exploration)
        runs = compare_priors(env_id, variants, seeds, jobs, methods=("loro",), **common)
        mix = loro.run_experiment(loro.Config(env_id=env_id, methods=("mix",), seeds=seeds,
                                              jobs=jobs, **source, **common), log=loro.QUIET)
        rl, points = runs["loro"]["methods"]["rl"], runs["loro"]["checkpoints"]
        after = [sum(p > steps for p in points) for steps in runs["loro"]["prior"]["steps"]]
        first = [sum(c[:n]) for c, n in zip(rl["curves"], after)]
        rows = {"rl": rl, "rl, its first as many points": dict(rl, learner_phase=first),
                "mix": mix["methods"]["mix"]}
        for name, r in runs.items():
            rows[name] = r["methods"]["loro"]
        report[f"{env_id} {label}"] = rows
        log(f"  {env_id} {label} done")
    return report


def table(report: dict) -> str:
    """Markdown: each method's sum after the prior's phase, mean ± std over seeds."""
    names = list(next(iter(report.values())))
    rows = ["| env, prior | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, by_name in report.items():
        cells = [mean_std(by_name[n]["learner_phase"]) for n in names]
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def steps_table(report: dict, env_id: str = "CliffWalking-v1") -> str:
    """Markdown: per seed, each learner's own steps to the threshold (rl from step 0, the others
    from the end of the prior's episodes), and their median."""
    if not any(key.startswith(env_id) for key in report):
        return ""
    lines = ["| prior | method | " + " | ".join(f"seed {i}" for i in range(len(
        next(iter(report.values()))["rl"]["own_steps_to_threshold"]))) + " | median |"]
    lines.append("|---" * (lines[0].count("|") - 1) + "|")
    for key, by_name in report.items():
        if key.startswith(env_id):
            for name, r in by_name.items():
                if name.startswith("rl, its first"):
                    continue
                cells = ["never" if s is None else f"{s:,}" for s in r["own_steps_to_threshold"]]
                lines.append(f"| {key.split()[-1]} | {name} | " + " | ".join(cells) +
                             f" | {median_steps(r['own_steps_to_threshold']):,.0f} |")
    return "\n".join(lines).replace("inf", "never")


def work(args) -> dict:
    report = run(args.seeds, args.jobs, args.budget_scale, args.alpha_scale,
                 [args.env] if args.env else PAPER_ENVS, args.exploration)
    print(f"exploration: {args.exploration}, step size x {args.alpha_scale:g}")
    print(table(report) + "\n\n" + steps_table(report))
    return report


if __name__ == "__main__":
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--alpha-scale", type=float, default=1.0, help="x every learner's step size")
    p.add_argument("--env", choices=PAPER_ENVS, help="only this environment's priors")
    p.add_argument("--exploration", choices=loro.EXPLORATIONS, default="optimistic",
                   help="how the Q-learners explore (loro.py §4)")
    main(p, work)
