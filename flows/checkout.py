"""The deployments' pull step: run each flow from the worker's own lensflow checkout.

`deployments/prefect.yaml` names `flows.checkout.use_checkout` as its pull step. A worker runs it in
the flow run's process, on its own host, so no path of the machine that ran `prefect deploy` is
stored in the deployment: the checkout is `$LENSFLOW_REPO` when set, else the one this `flows`
package is imported from (the worker's `pip install -e .` or `PYTHONPATH`), so the entrypoint file and
the modules it imports always come from the same place.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ENV = "LENSFLOW_REPO"
CHECKOUT = Path(__file__).resolve().parents[1]
MARKER = Path("flows") / "pipeline.py"   # what makes a folder a lensflow checkout


def checkout_directory(directory: str | os.PathLike | None = None) -> Path:
    """The argument, else `$LENSFLOW_REPO`, else this package's checkout; refused if it is none."""
    chosen = directory or os.environ.get(REPO_ENV) or CHECKOUT
    path = Path(chosen).expanduser().resolve()
    if not (path / MARKER).is_file():
        source = "the pull step's directory" if directory else (f"${REPO_ENV}" if os.environ.get(REPO_ENV)
                                                                 else "the imported flows package")
        raise FileNotFoundError(f"{path} (from {source}) is not a lensflow checkout: no {MARKER} there; "
                                f"set {REPO_ENV} on this worker to its checkout")
    return path


def use_checkout(directory: str | None = None) -> dict[str, str]:
    """Prefect pull step: change into the worker's checkout; returns {"directory": <it>} as Prefect's do."""
    path = checkout_directory(directory)
    os.chdir(path)
    return {"directory": str(path)}
