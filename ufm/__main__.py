import sys

try:
    from .cli import entry
except KeyboardInterrupt:  # a Ctrl-C while the command line loads
    print("ufm: interrupted", file=sys.stderr)
    sys.exit(130)

entry()
