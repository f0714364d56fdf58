"""The paper's comparison with the scripted stand-in (rules of thumb, not an LLM) as the prior,
at noise 0.2, in the five environments at the paper's budgets.

    python bench/standin.py [--seeds 5] [--budget-scale 1] [--json standin.json]
"""
import paper
from common import loro, main, parser


def stand_in(env_id: str) -> dict:
    return {f"scripted({loro.STAND_IN_NOISE:g})": dict(prior_noise=loro.STAND_IN_NOISE)}


def work(args) -> dict:
    report = paper.run(stand_in, args.seeds, args.jobs, args.budget_scale)
    print(paper.table(report))
    return report


if __name__ == "__main__":
    main(parser(__doc__.split("\n\n")[0]), work)
