"""``python -m imsflow_app``: the ``imsflow`` command, installed or from a checkout."""

from imsflow_app import main

if __name__ == "__main__":
    main()
