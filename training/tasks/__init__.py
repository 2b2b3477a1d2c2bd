"""One module per task: its data, network, augmentation and recipe. `TASKS` is the registry."""

from __future__ import annotations

from training.tasks.base import Task


def get_task(name: str, arch: str = "default") -> Task:
    """The task's default recipe, or with arch="seed" its classic tutorial baseline."""
    import importlib

    if name not in TASK_NAMES:
        raise SystemExit(f"unknown task {name!r}; choose from {', '.join(TASK_NAMES)}")
    if arch == "seed":
        from training.tasks.seed import SEED_TASKS

        return SEED_TASKS[name]()
    if arch != "default":
        raise SystemExit(f"unknown arch {arch!r}; choose default or seed")
    module = importlib.import_module(f"training.tasks.{name}")
    task_class: type[Task] = next(
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, Task) and v is not Task
    )
    return task_class()


TASK_NAMES = ("mnist", "cifar10", "imdb", "speech")
