"""The paper's comparison with the scripted stand-in (rules of thumb, not an LLM) as the prior,
at noise 0.2, in the five environments at the paper's budgets.

    python bench/standin.py [--seeds 5] [--budget-scale 1] [--json standin.json]
"""
import paper
from common import finish, loro, parser, start


def stand_in(env_id: str) -> dict:
    return {f"scripted({loro.STAND_IN_NOISE:g})": dict(prior_noise=loro.STAND_IN_NOISE)}


if __name__ == "__main__":
    args = start(parser(__doc__.splitlines()[0]))
    report = paper.run(stand_in, args.seeds, args.jobs, args.budget_scale)
    print(paper.table(report))
    finish(args, report)
