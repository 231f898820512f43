import sys

try:
    from .cli import entry
except KeyboardInterrupt:  # a Ctrl-C while the command line loads
    sys.exit(130)

entry()
