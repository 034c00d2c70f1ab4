"""``python -m kvlib.bench``: list the benchmarks; ``python -m kvlib.bench NAME --help`` for options."""

from __future__ import annotations

import argparse
import sys

from kvlib.bench import discover, load


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    benches = discover()
    listing = "\n".join(f"  {b.name:<16} {b.summary}" for b in benches.values())
    if not argv or argv[0] in ("-h", "--help", "list"):
        print("usage: python -m kvlib.bench <benchmark> [options]\n\nbenchmarks:\n" + listing)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in benches:
        print(f"unknown benchmark {name!r}\n\nbenchmarks:\n{listing}", file=sys.stderr)
        return 2
    module = load(name)
    parser = argparse.ArgumentParser(prog=f"python -m kvlib.bench {name}", description=benches[name].summary)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    # checks that span several options (or need torch, a file system, a GPU) run here, before main:
    # a module's optional validate(args, parser) reports a mistake with parser.error (usage, exit 2)
    validate = getattr(module, "validate", None)
    if validate is not None:
        validate(args, parser)
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
