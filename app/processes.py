"""Several serving processes on one port (SMS_WORKERS > 1): what they share.

`python -m app` creates a fresh folder and names it in PROMETHEUS_MULTIPROC_DIR before uvicorn
starts the workers. In it prometheus_client keeps each process's metric values (so /metrics
sums them), and each process publishes its readiness as `ready-<pid>.json` (so /readyz and
/v2/health/ready, answered by whichever process accepted the connection, speak for all of them).

Without that folder (one worker, or an app built in-process, as the tests do) there is no group
and readiness is this process's own.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

if TYPE_CHECKING:
    from app.serving.registry import ModelRegistry

SHARED_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class Readiness:
    ready: bool
    models: dict[str, str]
    problems: list[str]
    processes: list[dict[str, Any]] | None = field(default=None)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ready": self.ready,
            "models": self.models,
            "problems": self.problems,
        }
        if self.processes is not None:
            body["processes"] = self.processes
        return body


class ProcessGroup:
    """This process's place among the `size` workers sharing `directory`."""

    def __init__(self, directory: Path, size: int) -> None:
        self.directory = directory
        self.size = size
        self.pid = os.getpid()
        self._published: dict[str, Any] | None = None

    @classmethod
    def from_environment(cls, workers: int) -> ProcessGroup | None:
        """The group `python -m app` started this process in, or None when serving alone."""
        shared = os.environ.get(SHARED_DIR_ENV)
        if workers <= 1 or not shared:
            return None
        return cls(Path(shared), workers)

    def _state_file(self, pid: int) -> Path:
        return self.directory / f"ready-{pid}.json"

    def publish(self, registry: ModelRegistry) -> dict[str, Any]:
        """Write this process's readiness where the others read it (only when it changed)."""
        state = {
            "pid": self.pid,
            "ready": registry.is_ready(),
            "models": {name: entry.status for name, entry in registry.models.items()},
        }
        if state != self._published:
            temporary = self.directory / f".ready-{self.pid}.tmp"
            temporary.write_text(json.dumps(state))
            os.replace(temporary, self._state_file(self.pid))  # readers never see half a file
            self._published = state
        return state

    def withdraw(self) -> None:
        """This process stops serving: drop its readiness and its live gauges."""
        self._state_file(self.pid).unlink(missing_ok=True)
        mark_process_dead(self.pid, str(self.directory))

    def members(self, registry: ModelRegistry) -> list[dict[str, Any]]:
        """The state of every live worker: this one's as of now, the others' as published."""
        states = [self.publish(registry)]
        for path in sorted(self.directory.glob("ready-*.json")):
            pid = int(path.stem.removeprefix("ready-"))
            if pid == self.pid or not _alive(pid):
                continue  # a dead worker's file stays until the supervisor clears it
            try:
                states.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # withdrawn while we looked
        return sorted(states, key=lambda state: state["pid"])

    def metrics_text(self) -> bytes:
        """Every worker's metrics, summed (counters, histograms, `livesum` gauges) or combined
        as each gauge's multiprocess mode says."""
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.directory))
        return generate_latest(registry)


def clear_dead_worker(directory: Path, pid: int) -> None:
    """The supervisor's part: a worker that died without withdrawing (killed) leaves its
    readiness file and live gauges behind."""
    (directory / f"ready-{pid}.json").unlink(missing_ok=True)
    mark_process_dead(pid, str(directory))


def _alive(pid: int) -> bool:
    """Whether the process runs: a killed worker stays a zombie until the supervisor reaps it
    (every half second), and a zombie answers signals."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")  # the state follows the name


def readiness(registry: ModelRegistry, group: ProcessGroup | None) -> Readiness:
    """Ready when this process is, and (in a group) when every one of the workers is."""
    models = {name: entry.status for name, entry in registry.models.items()}
    problems = registry.problems()
    if group is None:
        return Readiness(registry.is_ready(), models, problems)
    members = group.members(registry)
    waiting = [m["pid"] for m in members if not m["ready"]]
    problems += [f"process {pid}: not ready" for pid in waiting]
    if len(members) < group.size:
        problems.append(f"{len(members)} of {group.size} processes started")
    ready = len(members) >= group.size and not waiting
    return Readiness(ready, models, problems, members)
