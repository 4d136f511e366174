"""The machine under test: its description, CPU pinning and the memory of server processes.

Everything here reads ``/proc`` directly, so the benchmark needs no process library and the
figures mean the same on every Linux machine.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pinning:
    """Which cores the servers and the load generator may use (``None``: not pinned)."""

    server: frozenset[int] | None
    generator: frozenset[int] | None

    @property
    def server_cores(self) -> int:
        """How many cores the server may use: nginx starts one worker per core."""
        return len(self.server) if self.server else (os.cpu_count() or 1)

    def server_command(self, command: list[str]) -> list[str]:
        """``command`` run under ``taskset`` on the server's cores, so every thread it starts is pinned."""
        if self.server is None:
            return command
        return ["taskset", "-c", cpu_list(self.server), *command]

    def describe(self) -> str:
        if self.server is None:
            return "not pinned"
        return f"servers (and Redis) on core {cpu_list(self.server)}, load generator on core {cpu_list(self.generator)}"


def cpu_list(cpus: frozenset[int] | None) -> str:
    return ",".join(str(c) for c in sorted(cpus or ()))


def choose_pinning(enabled: bool) -> tuple[Pinning, str | None]:
    """Server on the first core we may use, generator on the second; a reason when we cannot pin."""
    if not enabled:
        return Pinning(None, None), None
    if shutil.which("taskset") is None:
        return Pinning(None, None), "taskset not found (util-linux): not pinning"
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return Pinning(None, None), f"only {len(cores)} core available: not pinning"
    return Pinning(frozenset({cores[0]}), frozenset({cores[1]})), None


def pin_generator(pinning: Pinning) -> None:
    """Pin this process (the load generator) before it starts any thread."""
    if pinning.generator is not None:
        os.sched_setaffinity(0, pinning.generator)


def pin_process(pid: int, cpus: frozenset[int] | None) -> None:
    """Pin every thread of an already running process (for servers we cannot start under taskset)."""
    if cpus is None:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(int(task.name), cpus)


def raise_open_files_limit() -> int:
    """Thousands of sockets need thousands of descriptors: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (nginx's master and workers), from ``/proc/*/stat``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def rss_bytes(pids: list[int]) -> int:
    """Resident memory of ``pids`` together (``VmRSS``), bytes; vanished processes count 0."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


@dataclass(frozen=True)
class Machine:
    """What a reader needs to compare figures between machines."""

    cpu_model: str
    cores: int
    memory_gib: float
    kernel: str
    os: str
    python: str

    def describe(self) -> str:
        return (
            f"{self.cpu_model}, {self.cores} cores, {self.memory_gib:.0f} GiB RAM, "
            f"Linux {self.kernel} ({self.os}), Python {self.python}"
        )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def machine() -> Machine:
    cpu_model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = int(line.split()[1]) / 1024 / 1024
                break
    except OSError:
        pass
    try:
        os_name = platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        os_name = platform.system()
    return Machine(
        cpu_model=cpu_model,
        cores=os.cpu_count() or 1,
        memory_gib=memory_gib,
        kernel=platform.release(),
        os=os_name,
        python=sys.version.split()[0],
    )


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by ``pids`` (all their threads), seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def busy_seconds() -> float:
    """CPU time all processes on the machine spent in user and kernel mode so far, seconds.

    Less the server's and the generator's own time, it is what else ran during a measurement:
    other work on the machine makes every figure of that measurement too low.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system = (int(v) for v in fields[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def busy_percent(seconds: float = 1.0) -> float:
    """How busy the machine is right now (% of one core, all processes), sampled over ``seconds``."""
    before = busy_seconds()
    time.sleep(seconds)
    return 100 * (busy_seconds() - before) / seconds
