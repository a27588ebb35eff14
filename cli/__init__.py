"""The ``imsflow`` command line: the top of the house.

``cli.app`` holds the Typer app and what every command shares, ``cli.flowrun`` runs a flow from the shell,
``cli.commands`` the commands (one module per group), ``cli.main`` puts them together (the console script's
``main``). The CLI uses the flows, the tasks and the client library; none of them uses the CLI.
"""
