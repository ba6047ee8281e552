"""Each peer's command line for a given load and the parser of what it prints.

A peer is a load tool or a client pattern. Every one is given the same request (half_plus_two's
x = [[1.0]]) and the same load: an offered rate (open loop, or closed loop paced per worker for
tools that have no open loop) or a closed-loop concurrency, for a duration.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEERS_DIR = Path(__file__).resolve().parent
MODEL = "half_plus_two"
REST_BODY = '{"instances": [[1.0]]}'
TIMEOUT_S = 10


@dataclass(frozen=True)
class Load:
    """What every peer is asked to offer: a rate (req/s) or a concurrency, for duration_s."""

    rate: float | None = None
    concurrency: int | None = None
    duration_s: float = 3.0

    @property
    def workers(self) -> int:
        """Workers a paced closed-loop tool uses for a rate: 10, or one per 100 req/s."""
        if self.concurrency is not None:
            return self.concurrency
        assert self.rate is not None
        return max(10, math.ceil(self.rate / 100))

    def describe(self) -> str:
        """'200 req/s' or 'c=16'."""
        return f"{self.rate:,.0f} req/s" if self.rate is not None else f"c={self.concurrency}"


@dataclass(frozen=True)
class Figures:
    """What a peer reports of a run, in its own terms (None where it reports nothing)."""

    requests: int
    errors: int
    duration_s: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    p95_ms: float | None = None
    # deepchat-tfs bench only: the same latencies from the actual send time (not corrected).
    uncorrected_p50_ms: float | None = None
    uncorrected_p99_ms: float | None = None
    uncorrected_max_ms: float | None = None

    @property
    def achieved_rps(self) -> float:
        """Requests per second as the peer counts them."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


class Peer:
    """A load tool or client pattern; subclasses say how to run it and read its output."""

    name = ""
    api = "gRPC"
    # How it offers a rate, for the tables.
    loop = ""
    supports_rate = True
    corrected = False

    def unavailable(self, install: bool = False) -> str | None:
        """Why this peer cannot run here, or None; install=True may install it first."""
        return None

    def command(self, address: str, load: Load, workdir: Path) -> list[str]:
        """The command line for this load against address (HOST:PORT or http://HOST:PORT)."""
        raise NotImplementedError

    def env(self, load: Load) -> dict[str, str]:
        """Extra environment variables for the run."""
        return {}

    def parse(self, stdout: str, workdir: Path) -> Figures:
        """The figures the peer printed or wrote; ValueError when they are not there."""
        raise NotImplementedError

    def shown(self, command: list[str], address: str) -> str:
        """The command line as the docs show it: $TARGET or $URL for the address, no temp paths."""
        placeholder = "$URL" if address.startswith("http") else "$TARGET"
        words = []
        for word in command:
            if word == sys.executable:
                word = "python"
            word = word.replace(address, placeholder).replace(str(ROOT) + "/", "")
            if word.endswith("/deepchat-tfs"):
                word = "deepchat-tfs"
            elif word.endswith("/locust"):
                word = "locust"
            word = re.sub(r"/tmp/\S*?/(\w+\.json|peer)\b", r"\1", word)
            words.append(word if re.fullmatch(r"[\w./:=@,%+$-]+", word) else f"'{word}'")
        return " ".join(words)


def _seconds(duration_s: float) -> str:
    """Whole seconds, as every tool here parses them (Locust and wrk take no fractions)."""
    return f"{math.ceil(duration_s)}s"


class BenchPeer(Peer):
    """`deepchat-tfs bench`: open loop from a schedule, latency from the intended send time."""

    loop = "open loop (coordinated-omission corrected)"
    corrected = True

    def __init__(self, api: str = "gRPC", model: str = MODEL) -> None:
        self.api = api
        self.model = model
        self.name = f"deepchat-tfs bench ({api})"

    def command(self, address: str, load: Load, workdir: Path) -> list[str]:
        """`deepchat-tfs bench --target ... --rate R | --concurrency C --duration D --out ...`."""
        executable = str(Path(sys.executable).parent / "deepchat-tfs")
        command = [executable, "bench", "--target", address]
        if self.api == "REST":
            command += ["--protocol", "rest"]
        command += ["--model", self.model]
        if self.model == MODEL:
            command += ["--data", REST_BODY]  # other models: bench's prompts for text models
        if load.rate is not None:
            command += ["--rate", f"{load.rate:g}"]
        else:
            command += ["--concurrency", str(load.concurrency)]
        return [
            *command,
            # No warm-up: every tool's load starts at once; start-up is left out of CPU anyway.
            "--warmup", "0",
            "--duration", _seconds(load.duration_s), "--timeout", f"{TIMEOUT_S}s",
            "--out", str(workdir / "report.json"),
        ]  # fmt: skip

    def parse(self, stdout: str, workdir: Path) -> Figures:
        """The JSON report bench wrote."""
        report = json.loads((workdir / "report.json").read_text())
        corrected, uncorrected = report["latency_ms"], report["uncorrected_latency_ms"]
        return Figures(
            requests=report["requests"],
            errors=sum(report["errors"].values()),
            duration_s=report["duration_s"],
            p50_ms=corrected["p50"],
            p99_ms=corrected["p99"],
            max_ms=corrected["max"],
            p95_ms=corrected["p95"],
            uncorrected_p50_ms=uncorrected["p50"],
            uncorrected_p99_ms=uncorrected["p99"],
            uncorrected_max_ms=uncorrected["max"],
        )


_APT_UPDATED: list[bool] = []  # `apt-get update` runs at most once per process


def _debian_tool(binary: str, install: bool) -> str | None:
    """None when binary is on PATH; else (with install) apt-get installs it, or says why not."""
    if shutil.which(binary):
        return None
    if not install:
        return f"{binary} is not installed (Debian: apt-get install -y {binary})"
    if shutil.which("apt-get") is None:
        return f"{binary} is not installed and there is no apt-get here to install it"
    try:
        if not _APT_UPDATED:
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True,
                           timeout=300)  # fmt: skip
            _APT_UPDATED.append(True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", binary],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as error:
        return f"{binary} is not installed and `apt-get install -y {binary}` failed: {error}"
    return None if shutil.which(binary) else f"{binary}: installed but not on PATH"


class HeyPeer(Peer):
    """hey (Go): -c workers, each closed loop, paced by -q per worker."""

    name = "hey"
    api = "REST"
    loop = "closed loop per worker, -q paces each"

    def unavailable(self, install: bool = False) -> str | None:
        """hey from Debian's package."""
        return _debian_tool("hey", install)

    def command(self, address: str, load: Load, workdir: Path) -> list[str]:
        """`hey -z D -c W [-q R/W] -m POST ...`."""
        command = ["hey", "-z", _seconds(load.duration_s), "-c", str(load.workers)]
        if load.rate is not None:
            command += ["-q", f"{load.rate / load.workers:g}"]
        return [
            *command,
            "-t", str(TIMEOUT_S), "-m", "POST", "-T", "application/json", "-d", REST_BODY,
            f"{address}/v1/models/{MODEL}:predict",
        ]  # fmt: skip

    def parse(self, stdout: str, workdir: Path) -> Figures:
        """hey's summary: Total, Slowest, the latency distribution and the status codes."""

        def seconds(pattern: str) -> float | None:
            found = re.search(pattern, stdout)
            return float(found.group(1)) * 1000 if found else None

        total = re.search(r"Total:\s+([\d.]+) secs", stdout)
        if total is None:
            raise ValueError(f"hey printed no summary:\n{stdout[-2000:]}")
        ok = sum(int(n) for n in re.findall(r"\[200\]\s+(\d+) responses", stdout))
        codes = sum(int(n) for n in re.findall(r"\[\d+\]\s+(\d+) responses", stdout))
        _, _, errors_part = stdout.partition("Error distribution:")
        errors = sum(int(n) for n in re.findall(r"\[(\d+)\]\t", errors_part))
        return Figures(
            requests=codes + errors,
            errors=codes - ok + errors,
            duration_s=float(total.group(1)),
            p50_ms=seconds(r"50%+ in ([\d.]+) secs"),
            p99_ms=seconds(r"99%+ in ([\d.]+) secs"),
            max_ms=seconds(r"Slowest:\s+([\d.]+) secs"),
        )


class WrkPeer(Peer):
    """Debian's wrk (4.1, closed loop; not wrk2, which has -R and corrects for omission)."""

    name = "wrk"
    api = "REST"
    loop = "closed loop only (no rate: Debian ships wrk, not wrk2)"
    supports_rate = False

    def unavailable(self, install: bool = False) -> str | None:
        """wrk from Debian's package."""
        return _debian_tool("wrk", install)

    def command(self, address: str, load: Load, workdir: Path) -> list[str]:
        """`wrk -t 2 -c C -d D --latency -s benchmarks/peers/wrk_predict.lua URL`."""
        connections = load.workers
        return [
            "wrk", "-t", str(min(2, connections)), "-c", str(connections),
            "-d", _seconds(load.duration_s), "--timeout", f"{TIMEOUT_S}s", "--latency",
            "-s", str(PEERS_DIR / "wrk_predict.lua"), f"{address}/v1/models/{MODEL}:predict",
        ]  # fmt: skip

    def parse(self, stdout: str, workdir: Path) -> Figures:
        """The JSON line the Lua script's done() prints."""
        found = re.search(r"^WRKJSON (\{.*\})$", stdout, re.M)
        if found is None:
            raise ValueError(f"wrk printed no summary:\n{stdout[-2000:]}")
        data = json.loads(found.group(1))
        return Figures(
            requests=data["requests"],
            errors=data["errors"],
            duration_s=data["duration_us"] / 1e6,
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            max_ms=data["max_us"] / 1000,
        )


def _locust_installed() -> bool:
    return shutil.which("locust", path=str(Path(sys.executable).parent)) is not None


def _bench_requirement(name: str) -> str:
    """The bench extra's requirement for name, from the installed project's metadata (the
    version is pinned in pyproject.toml only), e.g. 'locust<3,>=2.30'."""
    for requirement in requires("deepchat-tfs") or ():
        spec, _, marker = requirement.partition(";")
        if re.match(rf"{name}\b", spec) and "bench" in marker:
            return spec.strip()
    raise LookupError(f"pyproject.toml's bench extra names no {name}")


class LocustPeer(Peer):
    """Locust, headless: users paced by constant_throughput (or back to back), CSV statistics."""

    loop = "closed loop per user, constant_throughput paces each"

    def __init__(self, api: str = "gRPC") -> None:
        self.api = api
        self.name = f"Locust ({api})"

    def unavailable(self, install: bool = False) -> str | None:
        """Locust from PyPI, as the bench extra pins it; install=True pip-installs it here."""
        if _locust_installed():
            return None
        requirement = _bench_requirement("locust")
        if not install:
            return f"Locust is not installed: pip install -e '.[bench]' ({requirement})"
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", requirement],
                check=True, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
        except subprocess.CalledProcessError as error:
            return f"Locust is not installed and `pip install {requirement}` failed: {error.stderr}"
        except (OSError, subprocess.SubprocessError) as error:
            return f"Locust is not installed and `pip install {requirement}` failed: {error}"
        return None if _locust_installed() else "Locust: installed but no locust script here"

    def command(self, address: str, load: Load, workdir: Path) -> list[str]:
        """`locust -f benchmarks/peers/locust_{grpc,rest}.py --headless -u U ... --csv`."""
        locustfile = PEERS_DIR / ("locust_grpc.py" if self.api == "gRPC" else "locust_rest.py")
        users = load.workers
        return [
            str(Path(sys.executable).parent / "locust"), "-f", str(locustfile), "--headless",
            "--host", address, "-u", str(users), "-r", str(users * 20),
            # -t counts Locust's own start-up (about 1 s here): given that second on top.
            "-t", _seconds(load.duration_s + 1), "--stop-timeout", "2", "--only-summary",
            "--loglevel", "WARNING", "--csv", str(workdir / "peer"),
        ]  # fmt: skip

    def env(self, load: Load) -> dict[str, str]:
        """The pace per user and the model."""
        per_user = 0.0 if load.rate is None else load.rate / load.workers
        return {"PEER_RATE_PER_USER": f"{per_user:g}", "PEER_MODEL": MODEL}

    def parse(self, stdout: str, workdir: Path) -> Figures:
        """The Aggregated row of Locust's _stats.csv."""
        with (workdir / "peer_stats.csv").open() as file:
            rows = {row["Name"]: row for row in csv.DictReader(file)}
        row = rows["Aggregated"]
        requests = int(row["Request Count"])
        rps = float(row["Requests/s"])

        def number(key: str) -> float | None:
            value = row.get(key, "N/A")
            return None if value in ("N/A", "", None) else float(value)

        return Figures(
            requests=requests,
            errors=int(row["Failure Count"]),
            duration_s=requests / rps if rps else 0.0,
            p50_ms=number("50%"),
            p99_ms=number("99%"),
            max_ms=number("Max Response Time"),
        )


class ScriptPeer(Peer):
    """One of the client patterns in benchmarks/peers, run as `python -m ...`."""

    module = ""

    def command(self, address: str, load: Load, workdir: Path) -> list[str]:
        """`python -m benchmarks.peers.M --target ... (--rate R --workers W | --concurrency C)`."""
        command = [sys.executable, "-m", self.module, "--target", address, "--model", MODEL]
        if load.rate is not None:
            command += ["--rate", f"{load.rate:g}", "--workers", str(load.workers)]
        else:
            command += ["--concurrency", str(load.concurrency)]
        return [*command, "--duration", f"{load.duration_s:g}"]

    def parse(self, stdout: str, workdir: Path) -> Figures:
        """The summary line the script prints."""
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise ValueError(f"{self.module} printed no summary:\n{stdout[-2000:]}")
        data = json.loads(lines[-1])
        return Figures(
            requests=data["requests"],
            errors=data["errors"],
            duration_s=data["duration_s"],
            p50_ms=data["p50_ms"],
            p99_ms=data["p99_ms"],
            max_ms=data["max_ms"],
        )


class TfsExamplePeer(ScriptPeer):
    """TF Serving's example client: a sync PredictionServiceStub from a thread pool."""

    name = "TF Serving example client"
    loop = "closed loop per thread, paced by sleep"
    module = "benchmarks.peers.tfs_client"


class ArticlePeer(ScriptPeer):
    """The seed article: a thread pool running asyncio.run(...) per request on grpc.aio."""

    name = "seed article's client"
    loop = "pool fed on schedule; times each task from its start"
    module = "benchmarks.peers.article_client"


class AioFloorPeer(ScriptPeer):
    """The reference row: a bare grpc.aio loop, the floor under bench's gRPC path."""

    name = "bare grpc.aio loop (reference)"
    loop = "open loop, no measurement beyond a list of times"
    module = "benchmarks.peers.aio_floor"


def all_peers() -> list[Peer]:
    """Every peer that can be measured in this checkout, gRPC first."""
    peers: list[Peer] = [
        BenchPeer("gRPC"),
        AioFloorPeer(),
        TfsExamplePeer(),
        ArticlePeer(),
        LocustPeer("gRPC"),
    ]
    return [*peers, BenchPeer("REST"), HeyPeer(), WrkPeer(), LocustPeer("REST")]
