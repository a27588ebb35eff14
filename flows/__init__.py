"""Prefect flows.

Importing any of them (a deployment, a worker, ``imsflow create``) installs imsflow's log redaction on the
root, imsflow, httpx and Prefect loggers, so no flow of this package logs a password, SK or token; the
create-image flow installs it again at the start of each run to cover handlers added since.
"""

from imsflow.redact import install_redaction

install_redaction()
