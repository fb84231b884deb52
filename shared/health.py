"""The images' health check: healthy while the worker's health file is fresh (it is touched every few seconds while
the worker polls its task queue). ``python -m shared.health [MAX_AGE_SECONDS]``; exit 0 healthy, 1 not."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from shared.settings import get_settings

DEFAULT_MAX_AGE = 30.0


def check(path: Path | None, max_age: float = DEFAULT_MAX_AGE) -> tuple[bool, str]:
    if path is None:
        return False, "TOLLGATE_HEALTH_FILE is not set: the worker keeps no health file"
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False, f"{path} does not exist: the worker has not started polling"
    if age > max_age:
        return False, f"{path} is {age:.0f} s old (more than {max_age:.0f} s): the worker is stuck or stopped"
    return True, f"worker alive ({age:.0f} s ago)"


def main() -> None:
    healthy, why = check(get_settings().health_file, float(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MAX_AGE)
    print(why)
    sys.exit(0 if healthy else 1)


if __name__ == "__main__":
    main()
