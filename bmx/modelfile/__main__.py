"""``python -m bmx.modelfile FILE.bmx``: print a summary of a bmx model file."""
import sys

from .reader import describe


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m bmx.modelfile FILE.bmx", file=sys.stderr)
        return 2
    try:
        text = describe(argv[0])
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
