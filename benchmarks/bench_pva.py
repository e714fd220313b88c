"""PVA platform validations per second on one core, over evidence captured beforehand from a
real TPM (swtpm through the driver); OCSP answered in-process by the M2MES responder.

    python benchmarks/bench_pva.py              # 2000 captured evidences
    python benchmarks/bench_pva.py -n 500       # fewer
    python benchmarks/bench_pva.py --profile    # plus the top functions (cProfile)

Each evidence has its own nonce (single use) and its own PfC (its own OCSP status and PfC
signature); the EK certificate is the same swtpm identity throughout. Figures:

- ``memo``: the validator remembers certificate signatures that verified (the EK CA chain
  is the same for a vendor's TPMs, so this is the steady state of a PVA);
- ``no memo``: every certificate signature verified again (a first-seen platform).

Goal: >= 1,000 validations per second on one core. Tests never assert timings.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from attestation_support import M2meAgent, M2mes, der, ek_roots_of  # noqa: E402

from mcim_hil.drivers.tpm import Tpm  # noqa: E402
from mcim_hil.emulators.swtpm import Swtpm  # noqa: E402
from mcim_hil.network.attestation import Evidence, PlatformValidator  # noqa: E402

PLATFORM = "m2me-bench"


def capture(n: int, memo: bool) -> tuple[PlatformValidator, list[tuple[Evidence, bytes]], bytes]:
    """n evidences for nonces issued by one validator (the TPM work happens here, untimed)."""
    m2mes = M2mes.create()
    with Swtpm(shared_identity=True) as swtpm, Tpm.open(swtpm.tcti) as tpm:
        validator = m2mes.validator(ek_roots_of(swtpm), signature_memo=memo, nonce_lifetime=3600.0)
        agent = M2meAgent.boot(tpm, PLATFORM)
        agent.pfc = der(m2mes.platform_credential(agent.ak_public, PLATFORM))
        challenge, secret = validator.credential_challenge(agent.ek_public, agent.ak_public)
        nonce = validator.new_nonce()
        first = agent.evidence(challenge, nonce)
        captured = [(first, nonce)]
        for _ in range(n - 1):
            nonce = validator.new_nonce()
            evidence = agent.requote(first, nonce)
            evidence.pfc = der(m2mes.platform_credential(agent.ak_public, PLATFORM))
            captured.append((evidence, nonce))
    return validator, captured, secret


def run(validator: PlatformValidator, captured: list[tuple[Evidence, bytes]], secret: bytes) -> float:
    start = time.perf_counter()
    for evidence, nonce in captured:
        result = validator.validate(evidence, nonce, secret)
        if not result.passed:
            raise SystemExit(f"captured evidence did not validate: {result.summary()}")
    return len(captured) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="evidences to capture and validate (default 2000)")
    parser.add_argument("--profile", action="store_true", help="print the top functions of one run")
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error("-n must be at least 2")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    print(f"capturing {args.n} evidences from swtpm ...", flush=True)
    for memo in (True, False):
        validator, captured, secret = capture(args.n, memo)
        warmup = max(1, args.n // 10)
        run(validator, captured[:warmup], secret)
        rate = run(validator, captured[warmup:], secret)
        label = "memo" if memo else "no memo"
        print(f"PVA validations per second, one core, {label:8s}: {rate:8.0f}  "
              f"({1e3 / rate:.3f} ms each, {len(captured) - warmup} evidences, goal >= 1000)")
        if args.profile and memo:
            validator, captured, secret = capture(args.n, memo)
            profile = cProfile.Profile()
            profile.runcall(run, validator, captured, secret)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
