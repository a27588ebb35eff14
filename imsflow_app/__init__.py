"""The ``imsflow`` command's entry point, and what keeps an installed imsflow from colliding with anything.

A checkout is a Prefect project: ``flows/``, ``tasks/``, ``runtime/``, ``deployments/`` (prefect.yaml),
``cli/`` and ``localcloud/`` sit at its top and import each other by those names (``from tasks import ...``).
The wheel puts them here, in this package's folder (``[tool.hatch.build.targets.wheel.sources]`` in
pyproject.toml), so the only names imsflow adds to the top of site-packages are ``imsflow`` (the library) and
``imsflow_app``: no other distribution's ``tasks`` or ``cli`` is shadowed and no one else's import finds ours.

:func:`activate` makes the folders importable by their own names in imsflow's processes only: it puts this
folder first on ``sys.path``, and on ``PYTHONPATH`` for the processes they start (``imsflow serve`` runs each
flow run in a ``python -m prefect.engine`` subprocess that imports its flow by module path, ``flows.fleet``).
In a checkout there is nothing to do: ``pip install -e .`` already puts the checkout on ``sys.path``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["activate", "main", "project_root"]

_HERE = Path(__file__).resolve().parent


def project_root() -> Path:
    """Where ``flows/``, ``tasks/``, ``deployments/``... are: here when installed, else the checkout."""
    return _HERE if (_HERE / "flows").is_dir() else _HERE.parent


def activate() -> Path:
    """Make the project's folders importable by their own names in this process and the ones it starts."""
    root = project_root()
    if root != _HERE:
        return root  # a checkout: already on sys.path, and its processes find it the same way
    entry = str(root)
    if entry not in sys.path:
        sys.path.insert(0, entry)
    inherited = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
    if entry not in inherited:
        os.environ["PYTHONPATH"] = os.pathsep.join([entry, *inherited])
    return root


def main() -> None:
    """The ``imsflow`` console script."""
    activate()
    from cli.main import main as run

    run()
