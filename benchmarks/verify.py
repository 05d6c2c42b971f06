"""Signature verification cost under forged large bodies (issue 8, item 9).

Two measurements, each against a baseline of the same run:

1. ``pure``: one ``verify()`` call with 5 secrets, a forged 1 MiB body and every header a
   construction can use (so every construction is tried), as a multiple of one HMAC-SHA256
   of that body. Compared: the signatures module of ``--base`` (a git revision, default the
   commit before this work), today's module with no pins (``auto`` before any delivery),
   and today's with every secret pinned (configured, or learned).
2. ``--loop``: a real receiver (uvicorn, one process) takes 16 streams of forged 1 MiB
   bodies (a separate load process) while one client sends genuine ~1.4 KB deliveries one
   after another; genuine latency p50/p99 is reported next to the same client with no forged
   load. Run it for the ``--base`` tree (exported with ``git archive``) and for this one.

    uv run python benchmarks/verify.py [--repeats 20] [--loop [--rounds 3] [--seconds 8]] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    PYTHON,
    ROOT,
    clean_env,
    dump_json,
    export_tree,
    machine,
    migrate_with,
    percentile,
    start_process,
    table,
)

BASE_REVISION = "ceb2dc1"
MIB = 1024 * 1024
SECRETS = [f"whsec_bench_secret_{i}_{'x' * 24}" for i in range(5)]
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


# ---- 1. pure --------------------------------------------------------------------------------


def load_module_at(revision: str, path: str, name: str) -> types.ModuleType:
    """``path`` as it was at git ``revision``, imported under ``name``."""
    source = subprocess.run(
        ["git", "show", f"{revision}:{path}"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses look their module up while decorating
    exec(compile(source, f"{revision}:{path}", "exec"), module.__dict__)  # noqa: S102
    return module


def interleaved(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each case, the cases taking turns: run one after the
    other, a neighbour's load on this shared machine lands on whichever ran then."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, call in cases.items():
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def forged_headers() -> dict[str, str]:
    """A forged signature with an id and a timestamp: every construction is applicable."""
    return {
        "x-webhook-signature": "sha256=" + "0" * 64,
        "x-webhook-id": "msg_forged",
        "x-webhook-timestamp": NOW.isoformat().replace("+00:00", "Z"),
    }


def pure(repeats: int, base: str) -> dict[str, Any]:
    from receiver.errors import SignatureError
    from receiver.signatures import verify

    body = os.urandom(MIB)
    keys = [secret.encode() for secret in SECRETS]
    headers = forged_headers()
    tolerance = timedelta(minutes=5)
    old = load_module_at(base, "receiver/signatures.py", "baseline_signatures")

    def rejected(call: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                call()
            except SignatureError:
                return
            raise AssertionError("a forged body verified")

        return run

    cases: dict[str, Callable[[], object]] = {
        "one HMAC-SHA256 of the body": lambda: hmac.new(keys[0], body, hashlib.sha256).digest(),
        f"{base} (every construction, every secret)": rejected(
            lambda: old.verify(keys, headers, body, now=NOW, tolerance=tolerance)
        ),
        "now, auto before any pin (every construction)": rejected(
            lambda: verify(keys, headers, body, now=NOW, tolerance=tolerance)
        ),
        "now, every secret pinned (configured or learned)": rejected(
            lambda: verify(
                keys,
                headers,
                body,
                now=NOW,
                tolerance=tolerance,
                allowed=["id.timestamp.body"] * len(keys),
            )
        ),
    }
    rows = interleaved(cases, repeats)
    one_hmac = rows.pop("one HMAC-SHA256 of the body")
    return {
        "one_hmac_ms": one_hmac * 1000,
        "cases": {
            name: {"ms": seconds * 1000, "hmacs": seconds / one_hmac}
            for name, seconds in rows.items()
        },
    }


# ---- 2. the event loop under forged load -------------------------------------------------------


def start_receiver(tree: Path, workdir: Path, port: int, **env: str) -> Any:
    database = f"sqlite:///{workdir / f'sink-{port}.db'}"
    migrate_with(tree, database)  # by the tree's own code: each version has its own head
    argv = [
        PYTHON, "-m", "uvicorn", "receiver.app:create_app", "--factory",
        "--app-dir", str(tree), "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log", "--timeout-keep-alive", "5",
    ]  # fmt: skip
    server_env = clean_env(
        NOVA_WEBHOOK_SECRETS=",".join(SECRETS),
        DATABASE_URL=database,
        LOG_LEVEL="warning",
        LOG_FORMAT="json",
        **env,
    )
    proc = start_process(
        argv, port=port, log_path=workdir / f"server-{port}.log", env=server_env, cwd=workdir
    )
    proc.wait_ready()
    return proc


def genuine(base_url: str, seconds: float) -> list[float]:
    """Latencies (ms) of genuine signed deliveries sent one after another for ``seconds``."""
    import httpx

    from receiver.signatures import sign

    latencies = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base_url, timeout=30) as client:
        while time.monotonic() < deadline:
            job = uuid.uuid4().hex
            payload = {
                "event": "score.completed",
                "tenantId": "acme",
                "scoringJobId": f"sj_{job}",
                "jobId": "job-1",
                "applicationId": f"app-{job}",
                "result": {
                    "score": 7,
                    "assessment": {
                        "verdict": "advance " * 60,
                        "strengths": ["x" * 300],
                        "concerns": ["y" * 300],
                        "interviewFocus": ["z" * 300],
                    },
                },
                "completedAt": "2026-01-15T11:58:00Z",
            }
            body = json.dumps(payload).encode()
            headers = sign(
                SECRETS[0],
                body,
                construction="id.timestamp.body",
                webhook_id=f"msg_{job}",
                timestamp=datetime.now(UTC),
            )
            started = time.perf_counter()
            response = client.post("/webhooks/nova", content=body, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"genuine delivery answered {response.status_code}")
    return latencies


async def forge(base_url: str, streams: int, seconds: float) -> int:
    """``streams`` connections posting forged 1 MiB bodies until ``seconds`` pass."""
    import httpx

    body = os.urandom(MIB)
    sent = 0
    deadline = time.monotonic() + seconds

    async def stream() -> None:
        nonlocal sent
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
            while time.monotonic() < deadline:
                response = await client.post(
                    "/webhooks/nova", content=body, headers=forged_headers()
                )
                assert response.status_code == 401
                sent += 1

    await asyncio.gather(*(stream() for _ in range(streams)))
    return sent


def measure(tree: Path, workdir: Path, seconds: float, streams: int, env: dict[str, str]) -> Any:
    """One server, one quiet phase, one phase under forged load."""
    from receiver.serving import free_port

    port = free_port()
    server = start_receiver(tree, workdir, port, **env)
    try:
        quiet = genuine(server.base_url, seconds / 2)
        load = subprocess.Popen(
            [PYTHON, __file__, "--forge", server.base_url, "--streams", str(streams),
             "--seconds", str(seconds + 2)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(1.0)  # let every forged stream start uploading
        loaded = genuine(server.base_url, seconds)
        out, _ = load.communicate(timeout=seconds + 120)
    finally:
        server.stop()
    return {
        "quiet_p50_ms": percentile(quiet, 50),
        "loaded_p50_ms": percentile(loaded, 50),
        "loaded_p99_ms": percentile(loaded, 99),
        "genuine_per_s": len(loaded) / seconds,
        "forged_per_s": int(out.decode().strip() or 0) / (seconds + 2),
    }


def loop(seconds: float, streams: int, base: str, rounds: int) -> dict[str, Any]:
    """Each variant once per round, rounds alternating; the median of each figure."""
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as tmp:
        workdir = Path(tmp)
        base_tree = export_tree(base, workdir / "base")
        variants: Sequence[tuple[str, Path, dict[str, str]]] = [
            (base, base_tree, {}),
            ("now, auto (only secret #1 learns a pin)", ROOT, {}),
            ("now, NOVA_SIGNATURE_CONSTRUCTION=id-timestamp", ROOT,
             {"NOVA_SIGNATURE_CONSTRUCTION": "id-timestamp"}),
        ]  # fmt: skip
        for _ in range(rounds):
            for name, tree, env in variants:
                runs.setdefault(name, []).append(measure(tree, workdir, seconds, streams, env))
    return {
        name: {key: statistics.median(run[key] for run in results) for key in results[0]}
        for name, results in runs.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--base", default=BASE_REVISION, help="git revision to compare with")
    parser.add_argument("--loop", action="store_true", help="also run the real-server test")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="--loop: alternating rounds")
    parser.add_argument("--forge", help=argparse.SUPPRESS)  # internal: the load process
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.forge:
        print(asyncio.run(forge(args.forge, args.streams, args.seconds)))
        return 0
    report: dict[str, Any] = {"machine": machine(), "pure": pure(args.repeats, args.base)}
    if args.loop:
        report["loop"] = loop(args.seconds, args.streams, args.base, args.rounds)
    if args.json:
        dump_json(report)
        return 0
    one = report["pure"]["one_hmac_ms"]
    print(f"verify(): 5 secrets, forged 1 MiB body; one HMAC-SHA256 of it = {one:.2f} ms")
    rows = [(name, c["ms"], c["hmacs"]) for name, c in report["pure"]["cases"].items()]
    print(table(rows, ["case", "ms per call", "x one HMAC"]))
    if args.loop:
        print(
            f"\ngenuine deliveries while {args.streams} streams post forged 1 MiB bodies "
            f"(median of {args.rounds} alternating rounds)"
        )
        loop_rows = [
            (name, r["quiet_p50_ms"], r["loaded_p50_ms"], r["loaded_p99_ms"], r["genuine_per_s"],
             r["forged_per_s"])
            for name, r in report["loop"].items()
        ]  # fmt: skip
        print(table(loop_rows, ["server", "p50 quiet", "p50 loaded", "p99 loaded", "genuine/s",
                           "forged/s"]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
