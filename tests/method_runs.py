"""One ``--smoke-test`` search per method, run the first time a test of the session asks for it:
test_methods_e2e checks every method on them, test_e2e reads the optuna one (issue 27: the
suite's time is its searches, so a search that several modules read runs once)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO, run_cli

CPU = REPO / "search_spaces" / "cpu"


def compare_file(folder: Path) -> Path:
    """A compare file over baseline and grid: the profile's own runs all five methods."""
    folder.mkdir()
    for name in ("baseline.yaml", "grid.yaml"):
        shutil.copy(CPU / name, folder / name)
    (folder / "compare.yaml").write_text("base: baseline.yaml\nname: cmp\nmethods: [baseline, grid]\n")
    return folder / "compare.yaml"


# The search-space flags of each method's shared run; every other method runs its profile file.
SPACE_FLAGS = {"compare": lambda storage: ("--space", str(compare_file(storage / "spaces")))}


class MethodRuns:
    """One ``--smoke-test`` search per method, run the first time a test asks for that method.

    Args:
        storage: the folder every run writes its experiment into, named after the method.
    """

    def __init__(self, storage: Path) -> None:
        self.storage = storage
        self.procs: dict[str, subprocess.CompletedProcess[str]] = {}

    def __call__(self, method: str) -> Path:
        """The experiment folder of ``method``'s run; fails the test if the run failed."""
        if method not in self.procs:
            space = SPACE_FLAGS.get(method, lambda _: ("--profile", "cpu"))(self.storage)
            storage = ("--storage", str(self.storage), "--name", method)
            try:
                self.procs[method] = run_cli("--method", method, *space, "--smoke-test", *storage)
            except subprocess.TimeoutExpired as err:  # kept, so the next test does not rerun it
                self.procs[method] = subprocess.CompletedProcess(err.cmd, -9, "", str(err))
        proc = self.procs[method]
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return self.storage / method
