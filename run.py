#!/usr/bin/env python3
"""Start chatsvc: ``python run.py`` serves, ``migrate`` migrates, ``token`` mints a development token."""

import sys

from chatsvc.cli import main

if __name__ == "__main__":
    sys.exit(main())
