"""Further ``imsflow`` commands, one module per area; each registers itself on ``imsflow.cli.app``."""
