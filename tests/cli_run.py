"""``run_cli``: run ``ufm`` in-process (no interpreter start-up, compiled functions shared) and capture it."""
from ufm.cli import main


def run_cli(capsys, *argv):
    """``(exit code, stdout, stderr)`` of ``ufm *argv``; argparse's ``SystemExit`` becomes the code."""
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
