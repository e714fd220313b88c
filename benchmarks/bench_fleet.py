"""The PVA's capacity and a fleet's mass change of SHO, with and without the IVF (issue 8 §4).

    python benchmarks/bench_fleet.py                       # 2000 validations, a fleet of 10^5
    python benchmarks/bench_fleet.py -n 500 --fleet 5000   # smaller, for a loaded machine

Prints:
- PVA full validations/s/core and authenticity-only checks/s/core (goals >= 2,500 and >= 10,000):
  per CPU second of this process (a shared machine's load does not count against the PVA), the
  PVA's work per M2ME of a change (the credential challenge, then the checks) over evidence
  from SIMULATED TREs (TPM 2.0 formats, ECDSA P-256), one core, steady state (each platform
  validated once before, as after the initial provisioning: OCSP response and reference values
  kept, certificate signatures remembered; the evidence carries a storage-key certification only
  with a credential challenge, as the M2ME's agent sends it), the fastest of ``--rounds`` rounds;
  beside them one ECDSA P-256 verification on this core, the floor of either kind of check;
- the fleet (``--fleet`` M2MEs, all simulated, ``--workers`` shards) with and without the IVF:
  M2MEs/s of the change, PVA CPU s, PVA integrity validations (goal with the IVF: 0 plus the
  tampered ones), the CPU ratio (goal >= 10x), and what 10^5 / 10^6 M2MEs would take at the
  measured rate when the fleet was smaller (labelled "extrapolated");
- peak memory per 10^5 M2MEs (goal < 1 GiB): the shards' peak RSS summed, scaled.
Tests never assert timings; this script only prints them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from mcim_hil.fleet.population import FleetSpec, SharedPki, configuration
from mcim_hil.fleet.runner import run_mode
from mcim_hil.fleet.simulated import SimulatedTre
from mcim_hil.network import pki
from mcim_hil.network.attestation import Evidence, Measurement, PlatformValidator, ReferenceValues


def _evidence(tre: SimulatedTre, validator: PlatformValidator, pfc: bytes, platform_id: str,
              timed: list[float]) -> tuple[Evidence, bytes, bytes]:
    keys, ek = tre.keys(), tre.endorsement_key()
    t0 = time.process_time()  # the PVA's work for the challenge, as Pva._challenge does it
    challenge, secret = None, b""
    if not validator.binding_known(ek.public, keys.ak.public.marshal()):
        challenge, secret = validator.credential_challenge(ek.public, keys.ak.public.marshal())
    nonce = validator.new_nonce()
    timed.append(time.process_time() - t0)
    proof = tre.activate_credential(challenge.credential_blob, challenge.encrypted_secret) if challenge else b""
    quote = tre.quote(nonce, [tre.pcr])
    # as the M2ME's agent does (m2me/agent.py evidence): the storage key's and the unseal authority's
    # certifications only with a credential challenge; without one the PVA holds this bound AK's earlier ones
    certified = tre.certify_storage_key(nonce) if challenge else None
    authority = tre.certify_unseal_authority(nonce) if challenge else None
    return Evidence(platform_id, ek.certificate or b"", ek.public, keys.ak.public.marshal(), proof, quote.attest,
                    quote.signature, quote.pcr_values, [Measurement(m.name, m.pcr, m.digest) for m in tre.event_log],
                    pfc, keys.storage_key.public.marshal(), certified.attest if certified else b"",
                    certified.signature if certified else b"",
                    tre.unseal_authority_public(), authority.attest if authority else b"",
                    authority.signature if authority else b""), nonce, secret


def pva_rates(n: int, rounds: int = 3) -> tuple[float, float]:
    """(full validations/s, authenticity-only checks/s) on this core: the fastest of ``rounds``
    rounds over the ``n`` platforms (a shared machine's other load only ever slows a round)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    shared = SharedPki.create()
    maker, ca = shared.maker(), shared.m2mes()
    model, components = configuration(0)
    reference = ReferenceValues({c.name: c.digest for c in components}, model=model).sign(ca)
    validator = PlatformValidator([maker.certificate], ca.certificate, pki.OcspResponder(ca).respond, [23],
                                  reference, nonce_lifetime=3600.0)
    fleet = []
    for i in range(n):
        tre = SimulatedTre(maker)
        tre.boot(components)
        pfc = pki.issue_platform_credential(ca, tre.keys().ak.public_key, f"sim-{i}", model=model).public_bytes(
            Encoding.DER)
        evidence, nonce, secret = _evidence(tre, validator, pfc, f"sim-{i}", [])
        assert validator.validate(evidence, nonce, secret).passed  # the initial provisioning
        fleet.append((tre, pfc, f"sim-{i}"))
    rates = []
    for check_integrity in (True, False):
        best = 0.0
        for _ in range(rounds):
            challenge_s: list[float] = []
            captured = [_evidence(tre, validator, pfc, pid, challenge_s) for tre, pfc, pid in fleet]
            t0 = time.process_time()
            for evidence, nonce, secret in captured:
                result = validator.validate(evidence, nonce, secret, check_integrity=check_integrity)
                if not result.passed:
                    raise SystemExit(f"evidence did not validate: {result.summary()}")
            best = max(best, n / (time.process_time() - t0 + sum(challenge_s)))
        rates.append(best)
    return rates[0], rates[1]


def ecdsa_verify_us(count: int = 3000, rounds: int = 3) -> float:
    """One ECDSA P-256 / SHA-256 verification with cryptography on this core, in us: the floor of
    any check of a quote over a fresh nonce, with the IVF or without."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    data = bytes(145)  # a quote's TPMS_ATTEST is ~145 bytes
    signature, public, scheme = key.sign(data, ec.ECDSA(hashes.SHA256())), key.public_key(), ec.ECDSA(hashes.SHA256())
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(count):
            public.verify(signature, data, scheme)
        best = min(best, (time.process_time() - t0) / count)
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="M2MEs for the PVA rates (default 2000)")
    parser.add_argument("--fleet", type=int, default=100_000, help="fleet size (default 10^5)")
    parser.add_argument("--tampered", type=int, default=10, help="tampered M2MEs in the fleet (default 10)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="shards in parallel")
    parser.add_argument("--rounds", type=int, default=3, help="PVA rates: the fastest of this many rounds (default 3)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.fleet < 1 or args.workers < 1 or args.rounds < 1:
        parser.error("-n, --fleet, --workers and --rounds must be at least 1")
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if affinity:
        os.sched_setaffinity(0, {sorted(affinity)[0]})  # one core for the PVA rates
    print(f"PVA rates over {args.n} simulated M2MEs, one core, fastest of {args.rounds} rounds ...", flush=True)
    full, authenticity = pva_rates(args.n, args.rounds)
    verify_us = ecdsa_verify_us()
    print(f"PVA full validations/s/core:            {full:9.0f}   (per CPU second; goal >= 2,500)")
    print(f"PVA authenticity-only checks/s/core:    {authenticity:9.0f}   (per CPU second; goal >= 10,000)")
    print(f"  per M2ME: full {1e6 / full:.1f} us, authenticity only {1e6 / authenticity:.1f} us, of which one "
          f"ECDSA P-256 verification (the quote over the fresh nonce, both ways) {verify_us:.1f} us; so the "
          f"IVF can make the PVA's checks at most {authenticity / full:.2f}x cheaper")
    if affinity:
        os.sched_setaffinity(0, affinity)

    spec = FleetSpec(devices=args.fleet, real=0, configurations=4, tampered=min(args.tampered, args.fleet))
    shared = SharedPki.create()
    runs = {}
    for with_ivf in (True, False):
        print(f"fleet of {args.fleet} {'with' if with_ivf else 'without'} the IVF, {args.workers} shards ...",
              flush=True)
        t0 = time.perf_counter()
        runs[with_ivf] = run = run_mode(spec, with_ivf, shared, workers=args.workers)
        wall = time.perf_counter() - t0
        print(f"  change: {run.m2mes_per_s:9.1f} M2MEs/s (wall clock), PVA CPU {run.pva_change['cpu_s']:.2f} s, "
              f"PVA integrity validations {int(run.pva_change['integrity_validations'])} "
              f"(tampered {spec.tampered}, fallbacks {run.fallbacks}), changed {run.changed}, refused {run.refused}; "
              f"provisioning + change wall {wall:.1f} s; peak RSS {run.peak_rss_mib:.0f} MiB")
    with_ivf, without = runs[True], runs[False]
    ratio = without.pva_change["cpu_s"] / with_ivf.pva_change["cpu_s"] if with_ivf.pva_change["cpu_s"] else 0
    print(f"PVA CPU without / with the IVF: {ratio:.2f}x   (goal >= 10x); per M2ME with "
          f"{with_ivf.pva_change['cpu_s'] / spec.devices * 1e6:.0f} us, without "
          f"{without.pva_change['cpu_s'] / spec.devices * 1e6:.0f} us (the PVA's handlers: challenge, checks, "
          f"its validation record)")
    label = "" if args.fleet == 100_000 else " (extrapolated at the measured rate)"
    for size in (100_000, 1_000_000):
        print(f"{size:>9} M2MEs change with the IVF in {size / with_ivf.m2mes_per_s:8.1f} s, "
              f"without in {size / without.m2mes_per_s:8.1f} s{label if size != args.fleet else ''}")
    cores = 1_000_000 / with_ivf.m2mes_per_s / 300 * args.workers
    print(f"10^6 with the IVF in 5 min (goal): {1_000_000 / 300:.0f} M2MEs/s; measured {with_ivf.m2mes_per_s:.0f} on "
          f"{args.workers} shards, so ~{cores:.0f} such cores if the shards scale by M2ME (extrapolated)")
    run = max(runs.values(), key=lambda r: r.peak_rss_mib)
    per_m2me_kib = (run.peak_rss_mib - run.base_rss_mib) * 1024 / args.fleet
    per_1e5 = per_m2me_kib * 100_000 / 1024
    print(f"memory: peak RSS {run.peak_rss_mib:.0f} MiB over {run.shards} shards, {run.base_rss_mib:.0f} MiB of it "
          f"before the first M2ME; {per_m2me_kib:.1f} KiB per M2ME")
    print(f"peak memory per 10^5 M2MEs: {per_1e5:.0f} MiB + {run.base_rss_mib:.0f} MiB for the shards' "
          f"processes{label}   (goal < 1024 MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
