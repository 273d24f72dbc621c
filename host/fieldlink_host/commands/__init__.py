"""CLI subcommands: one module per command, each with ``register(subparsers)``.

Convention: ``p = sub.add_parser(NAME, help=..., description=..., epilog=EXAMPLES,
formatter_class=argparse.RawDescriptionHelpFormatter)`` and ``p.set_defaults(func=handler)``
where ``handler(args) -> int`` calls a typed library function.
"""
