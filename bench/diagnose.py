"""Why can the warm-started greedy policy walk the cliff after the prior's phase? For each seed's
window of a CliffWalking prior: the first greedy evaluations after the prior's phase, each with
its return, the path it takes (a cell, the action taken there, and * where the data never
tried that action in that cell), the Q-values where it first takes such an untried action, and
how many online updates the learner had made by then.

    python bench/diagnose.py [--dataset PATH | --prior qwen2.5-7b] [--evaluations 3]
                             [--loro OTHER_LORO.py] [--seeds 5] [--json diagnose.json]

--loro diagnoses another version of loro.py (e.g. `git show REV:loro.py > old.py`), so that the
same windows can be read before and after a change.
"""
import numpy as np

from common import loro, main, parser
from identical import load

NAMES = "URDL"                                   # CliffWalking's actions 0-3: up right down left


def diagnose(module, cfg, seed: int, prior, evaluations: int) -> dict:
    """One seed: the learner's first greedy evaluations after the prior's phase."""
    spec = module.env_spec(cfg.env_id)
    tried = np.zeros((48, 4), bool)
    tried[prior.obs, prior.actions] = True
    seen, updates = [], dict(all=0, offline=0)
    update, pretrain = module.TabularQ.update, module.pretrain

    def counting(self, *batch):                  # every update, offline and online
        updates["all"] += 1
        return update(self, *batch)

    def pretraining(*args, **kwargs):            # the offline ones
        losses = pretrain(*args, **kwargs)
        updates["offline"] = len(losses)
        return losses

    def evaluate(learner, env, episodes, rng):   # one greedy episode, recorded
        obs, _ = env.reset()
        total, path, done, first_untried = 0.0, [], False, None
        while not done:
            a = learner.act(obs, rng, greedy=True)
            path.append(f"({obs // 12},{obs % 12}){NAMES[a]}{'' if tried[obs, a] else '*'}")
            if first_untried is None and not tried[obs, a]:
                first_untried = dict(cell=[int(obs) // 12, int(obs) % 12],
                                     q=learner.q[obs].round(1).tolist(),
                                     tried=tried[obs].tolist())
            obs, reward, terminated, truncated, _ = env.step(a)
            total, done = total + reward, terminated or truncated
        seen.append(dict(return_=total, path=" ".join(path[:24]) + (" ..." if len(path) > 24
                                                                      else ""),
                         first_untried=first_untried,
                         updates=updates["all"] - updates["offline"]))
        return total

    saved = module.evaluate
    module.evaluate, module.TabularQ.update, module.pretrain = evaluate, counting, pretraining
    try:
        points = module.checkpoints(cfg)
        curve, _ = module.learn_online("loro", cfg, spec, seed, prior, points)
    finally:
        module.evaluate, module.TabularQ.update, module.pretrain = saved, update, pretrain
    after = points > len(prior)
    return dict(seed=seed, window=prior.meta.get("window"), steps=len(prior),
                goal_episodes=int(prior.terminated.sum()),
                after_sum=float(curve[after].sum()), first=seen[:evaluations])


def report_text(rows: list) -> str:
    lines = []
    for r in rows:
        lines.append(f"seed {r['seed']}: episodes {r['window'][0]}-{r['window'][-1]}, "
                     f"{r['steps']:,} steps, {r['goal_episodes']} of them reach the goal; sum "
                     f"after the prior's phase {r['after_sum']:,.0f}")
        for k, e in enumerate(r["first"]):
            lines.append(f"  evaluation {k + 1} after the prior's phase ({e['updates']} online "
                         f"updates before it): return {e['return_']:,.0f}: {e['path']}")
            if e["first_untried"]:
                u = e["first_untried"]
                lines.append(f"    first untried action at {tuple(u['cell'])}: Q (up, right, "
                             f"down, left) = {u['q']}, tried by the data: {u['tried']}")
    return "\n".join(lines)


def work(args) -> dict:
    module = load(args.loro) if args.loro else loro
    settings = dict(dataset=args.dataset) if args.dataset else dict(prior=args.prior)
    cfg = module.Config(env_id="CliffWalking-v1", seeds=args.seeds, **settings).resolved()
    seeds = list(range(args.seeds))           # all at once: an older loro.py's windows depend on it
    priors, _ = module.make_priors(cfg, module.env_spec(cfg.env_id), seeds, module.QUIET)
    rows = [diagnose(module, cfg, seed, priors[seed], args.evaluations) for seed in seeds]
    print(f"{cfg.dataset}, loro.py from {module.__file__}")
    print(report_text(rows))
    return dict(rows=rows)


if __name__ == "__main__":
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--prior", default=loro.DEFAULT_PRIOR, help="a shipped CliffWalking dataset")
    p.add_argument("--dataset", help="a CliffWalking .npz instead (e.g. from bench/variants.py)")
    p.add_argument("--evaluations", type=int, default=3, help="evaluations to show per seed")
    p.add_argument("--loro", help="another version of loro.py to diagnose")
    main(p, work)
