"""`oauth2-introspection`: validate, convert and describe configurations offline.

    oauth2-introspection validate FILE...   exit 0, or 1 with one line per problem
    oauth2-introspection convert FILE       decK YAML on stdout (from Kubernetes, JSON or YAML)
    oauth2-introspection schema [--plugin]  JSON schema of the declarative file (or plugin config)

It reads files with the addon's own loader (`loader.load_file`), so it
accepts and refuses exactly what `introspection_config` does.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .errors import ConfigError
from .export import config_to_json, config_to_yaml, declarative_schema, plugin_schema
from .loader import load_file, summary
from .policy import compile_policy


def _validate(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            config = load_file(path)
        except ConfigError as e:
            for line in e.problems:
                print(line, file=sys.stderr)
            status = 1
            continue
        # what mitmproxy would warn about when loading it (an anonymous that
        # names no consumer, a service plugin no route reaches), on stderr
        compile_policy(config, lambda url, keepalive: (url, keepalive), source=str(path))
        print(f"{path}: OK ({summary(config)})")
    return status


def _convert(args: argparse.Namespace) -> int:
    try:
        config = load_file(args.file)
    except ConfigError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        return 1
    sys.stdout.write(config_to_json(config) if args.json else config_to_yaml(config))
    return 0


def _schema(args: argparse.Namespace) -> int:
    schema = plugin_schema() if args.plugin else declarative_schema()
    print(json.dumps(schema, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oauth2-introspection",
        description="Validate, convert and describe oauth2-introspection configurations "
                    "(decK YAML/JSON or Kubernetes manifests).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="check files; exit 0, or 1 with one line per problem")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=_validate)
    p = sub.add_parser("convert", help="print the file as decK YAML (Kubernetes/JSON/YAML in)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    p.set_defaults(func=_convert)
    p = sub.add_parser("schema", help="print the JSON schema (generated from the model)")
    p.add_argument("--plugin", action="store_true",
                   help="only the oauth2-introspection plugin's config")
    p.set_defaults(func=_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
