"""Parallel collection: 32 CliffWalking episodes collected through loro's HTTP client from a
local chat server (the stand-in behind it) that answers each call after 50 ms, with 1 worker
and with 8. Every episode is 13 steps, so the ideal speed-up is 8x.

    python bench/workers.py [--seeds 1] [--budget-scale 1] [--json workers.json]
"""
import time

import numpy as np

from common import loro, main, parser, serve_stand_in

EPISODES, LATENCY, WORKERS = 32, 0.05, (1, 8)


def run(repeats: int, episodes: int, log=print) -> dict:
    """Seconds per collection with each number of workers (median over repeats)."""
    server, url = serve_stand_in("CliffWalking-v1", latency=LATENCY)
    spec, seconds, calls = loro.env_spec("CliffWalking-v1"), {w: [] for w in WORKERS}, 0
    try:
        for _ in range(repeats):
            for w in WORKERS:
                client = loro.ChatClient(url, "stand-in")
                started = time.time()
                loro.collect(spec, lambda e: client, episodes, workers=w, log=loro.QUIET)
                seconds[w].append(time.time() - started)
                calls = client.stats["calls"]
    finally:
        server.shutdown()
    median = {w: float(np.median(s)) for w, s in seconds.items()}
    return dict(seconds=median, calls=calls, episodes=episodes, latency=LATENCY,
                speedup=median[WORKERS[0]] / median[WORKERS[-1]])


def work(args) -> dict:
    report = run(args.seeds, max(2, round(EPISODES * args.budget_scale)))
    s = report["seconds"]
    print(f"{report['episodes']} episodes, {report['calls']} calls, reply latency "
          f"{LATENCY * 1000:.0f} ms: 1 worker {s[1]:.2f} s, 8 workers {s[8]:.2f} s, speed-up "
          f"{report['speedup']:.1f}x")
    return report


if __name__ == "__main__":
    main(parser(__doc__.split("\n\n")[0], seeds=1), work)
