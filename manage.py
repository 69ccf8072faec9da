#!/usr/bin/env python
import gc
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
    # The process ends here: the collections run while it shuts down need not walk everything it built
    # (for a command that has read a million saved searches, that walk is most of a second).
    gc.freeze()
