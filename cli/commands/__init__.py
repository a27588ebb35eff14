"""The ``imsflow`` commands, one module per group; each registers its commands on ``cli.app.app``.

``cli.main`` imports them (in the order ``imsflow --help`` lists them). They share ``cli.app`` (consoles,
error lines) and ``cli.flowrun`` (running a flow from the shell); no command module imports another.
"""
