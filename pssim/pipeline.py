"""Pipeline parallelism as data: how the model is cut into stages and each stage's action list.

`partition_units` cuts the model's units into `stages` consecutive pieces, `uniform` by unit count
or `balanced` by compute (the cut that minimises the slowest stage). `schedule` returns, per stage,
the ordered actions `(kind, microbatch)` with kind "F" (forward) or "B" (backward), GPipe (all
forwards, then all backwards) or 1F1B (PipeDream-Flush: warm-up forwards, then one forward one
backward, then cool-down backwards). Both backends execute these very lists; `dry_run` simulates
them with unit costs to check they cannot deadlock and to give the bubble.

Dependencies: F(s, m) needs F(s-1, m)'s activation; B(s, m) needs F(s, m) and B(s+1, m)'s
activation gradient. With equal stage times and free communication the bubble fraction is
(p-1)/(m+p-1) for both schedules (Huang et al., GPipe, 2019; Narayanan et al., PipeDream-Flush).
"""

from __future__ import annotations

Action = tuple[str, int]


def partition_units(costs: list[float], stages: int, policy: str) -> list[tuple[int, int]]:
    n = len(costs)
    if not 1 <= stages <= n:
        raise ValueError(f"cannot cut {n} units into {stages} stages")
    if policy == "uniform":
        base, extra = divmod(n, stages)
        bounds, a = [], 0
        for s in range(stages):
            b = a + base + (1 if s < extra else 0)
            bounds.append((a, b))
            a = b
        return bounds
    # balanced: minimise the largest stage cost over contiguous cuts
    # (O(stages * n^2) DP; n is small)
    pref = [0.0]
    for c in costs:
        pref.append(pref[-1] + c)
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(stages + 1)]
    cut = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = 0.0
    for s in range(1, stages + 1):
        for j in range(s, n - (stages - s) + 1):
            for i in range(s - 1, j):
                v = max(best[s - 1][i], pref[j] - pref[i])
                if v < best[s][j] - 1e-15:
                    best[s][j], cut[s][j] = v, i
    bounds, j = [], n
    for s in range(stages, 0, -1):
        i = cut[s][j]
        bounds.append((i, j))
        j = i
    return bounds[::-1]


def schedule(kind: str, stages: int, microbatches: int) -> list[list[Action]]:
    """Per stage, the ordered list of actions."""
    out: list[list[Action]] = []
    for s in range(stages):
        if kind == "gpipe":
            acts = [("F", m) for m in range(microbatches)] + [("B", m) for m in range(microbatches)]
        elif kind == "1f1b":
            warm = min(stages - s - 1, microbatches)
            acts = [("F", m) for m in range(warm)]
            f, b = warm, 0
            while f < microbatches:
                acts.append(("F", f))
                f += 1
                acts.append(("B", b))
                b += 1
            acts += [("B", m) for m in range(b, microbatches)]
        else:
            raise ValueError(f"unknown schedule {kind!r}")
        out.append(acts)
    return out


def dry_run(plan: list[list[Action]], fwd: list[float], bwd: list[float]) -> tuple[float, float]:
    """Execute the plan with the given per-stage action times and free communication.

    Returns (makespan, bubble fraction). Raises RuntimeError if the plan deadlocks.
    """
    P = len(plan)
    done: dict[tuple[str, int, int], float] = {}
    pos = [0] * P
    clock = [0.0] * P
    progressed = True
    while progressed:
        progressed = False
        for s in range(P):
            while pos[s] < len(plan[s]):
                kind, m = plan[s][pos[s]]
                deps = []
                if kind == "F" and s > 0:
                    deps.append(("F", s - 1, m))
                if kind == "B":
                    deps.append(("F", s, m))
                    if s < P - 1:
                        deps.append(("B", s + 1, m))
                if any(d not in done for d in deps):
                    break
                start = max([clock[s], *(done[d] for d in deps)])
                end = start + (fwd[s] if kind == "F" else bwd[s])
                done[(kind, s, m)] = end
                clock[s] = end
                pos[s] += 1
                progressed = True
    if any(pos[s] < len(plan[s]) for s in range(P)):
        raise RuntimeError(f"pipeline schedule deadlocks at positions {pos}")
    makespan = max(clock)
    busy = sum(
        len(plan[s]) and sum(fwd[s] if k == "F" else bwd[s] for k, _ in plan[s]) for s in range(P)
    )
    return makespan, 1.0 - busy / (P * makespan) if makespan > 0 else 0.0
