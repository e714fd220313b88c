"""Fuzz every parser of the project with >= 10^6 inputs; print inputs tried, crashes, slowest input.

    python benchmarks/fuzz.py                     # 10^6 inputs over the 7 targets, seed 1
    python benchmarks/fuzz.py -n 20000 --seed 7 --target modem-driver

A seeded mutational loop (the same seed tries the same inputs): each input is a valid seed
of the target mutated by bit flips, byte inserts and deletes, interesting values, splices of
two seeds, or plain random bytes. The rule (tests/fuzz_targets.py): every rejection is the
project's own error type with a message; anything else is a crash, printed with its input
in hex so that it can become a regression test. Goal: 0 crashes. Exit 1 if any.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fuzz_targets  # noqa: E402  (the targets live beside the tests that use them)
from fuzz_targets import Crash, Target  # noqa: E402

INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x81", b"\x82", b"\x83", b"\r", b"\n", b"\r\n", b",", b'"',
               b":", b"\xc2\xb2", b"\xc2\xb9", b"\xd9\xa1", b"9" * 40, b"-1", b"\x00\x00", b"\xff\xff"]


def mutate(rng: random.Random, seeds: list[bytes], max_size: int) -> bytes:
    if rng.random() < 0.05:
        return rng.randbytes(rng.randrange(max_size))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        op = rng.randrange(7)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:                                   # flip a bit
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:                                 # a random byte
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 2:                                          # insert random bytes
            data[pos:pos] = rng.randbytes(rng.randrange(1, 9))
        elif op == 3 and data:                                 # delete a run
            del data[pos:pos + rng.randrange(1, 17)]
        elif op == 4:                                          # an interesting value
            data[pos:pos] = rng.choice(INTERESTING)
        elif op == 5:                                          # splice with another seed
            other = rng.choice(seeds)
            cut = rng.randrange(len(other) + 1)
            data = data[:pos] + other[cut:]
        else:                                                  # truncate
            del data[pos:]
    return bytes(data[:max_size])


def fuzz(target: Target, n: int, seed: int, shown: int = 5) -> dict:
    rng = random.Random(f"{seed}:{target.name}")
    crashes: list[tuple[bytes, str]] = []
    kinds: set[str] = set()
    outcomes = {"accepted": 0, "rejected": 0}
    slowest: list[tuple[float, bytes]] = []     # the 5 slowest, timed again at the end (load spikes)
    t0 = time.perf_counter()
    for _ in range(n):
        data = mutate(rng, target.seeds, target.max_size)
        start = time.perf_counter()
        try:
            outcomes[target.check(data)] += 1
        except Crash as exc:
            message = re.sub(r" for b['\"].*$", "", str(exc), flags=re.S)       # not the input itself
            kind = re.sub(r"[0-9]+", "#", re.sub(r": '[^']*'\)", ": '...')", message))[:160]
            if kind not in kinds and len(kinds) < shown:      # each kind of crash once
                kinds.add(kind)
                print(f"  CRASH {target.name}: {exc}\n    input: {data.hex()}", flush=True)
            crashes.append((data, str(exc)))
        took = time.perf_counter() - start
        if len(slowest) < 5 or took > slowest[0][0]:
            slowest = sorted(slowest + [(took, data)])[-5:]
    seconds = time.perf_counter() - t0
    retimed = [(_best_of(target, data), data) for _, data in slowest]
    worst = max(retimed) if retimed else (0.0, b"")
    return {"target": target.name, "inputs": n, "crashes": len(crashes), "kinds": sorted(kinds), **outcomes,
            "seconds": seconds, "slowest_s": worst[0], "slowest_input": worst[1]}


def _best_of(target: Target, data: bytes, runs: int = 3) -> float:
    """The input's own cost: the best of a few runs, so a scheduler hiccup is not its fault."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        try:
            target.check(data)
        except Crash:
            pass
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    all_targets = fuzz_targets.targets()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--inputs", type=int, default=1_000_000, help="inputs in total (default 10^6)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target", action="append", choices=[t.name for t in all_targets],
                        help="only these targets (repeatable)")
    args = parser.parse_args(argv)
    # the modem driver warns about every burst of noise it drops: that is its job, not news here
    logging.getLogger("mcim_hil.drivers.modem").setLevel(logging.ERROR)
    # the emulator's logged failures are counted as crashes by the target; not printed twice
    logging.getLogger("mcim_hil.emulators.modem").propagate = False
    chosen = [t for t in all_targets if not args.target or t.name in args.target]
    # Cheap parsers take more of the budget; the modem driver (a reader thread per input) less.
    weight = {"modem-driver": 0.4, "bench-loader": 0.6, "m2msimmobj": 0.6}
    total_weight = sum(weight.get(t.name, 1.0) for t in chosen)
    budgets = [max(1, int(args.inputs * weight.get(t.name, 1.0) / total_weight)) for t in chosen]
    budgets[0] += args.inputs - sum(budgets)
    print(f"fuzzing {len(chosen)} targets, {args.inputs} inputs, seed {args.seed}", flush=True)
    rows = []
    for target, n in zip(chosen, budgets):
        row = fuzz(target, n, args.seed)
        rows.append(row)
        print(f"{row['target']:<17} {row['inputs']:>8} inputs  {row['crashes']:>5} crashes  "
              f"{row['rejected']:>8} rejected  {row['seconds']:7.1f} s  slowest {row['slowest_s'] * 1e3:7.2f} ms",
              flush=True)
    inputs = sum(r["inputs"] for r in rows)
    crashes = sum(r["crashes"] for r in rows)
    slow = max(rows, key=lambda r: r["slowest_s"])
    print(f"inputs tried: {inputs}")
    kinds = [f"{r['target']}: {k}" for r in rows for k in r["kinds"]]
    print(f"crashes: {crashes}" + (f" ({len(kinds)} distinct: " + "; ".join(kinds) + ")" if kinds else ""))
    print(f"slowest input: {slow['slowest_s'] * 1e3:.2f} ms, best of 3 ({slow['target']}, {len(slow['slowest_input'])} bytes: "
          f"{slow['slowest_input'][:48].hex()}{'...' if len(slow['slowest_input']) > 48 else ''})")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
