"""What every command line shares: its argparse parser, built from the command module's docstring."""

from __future__ import annotations

import argparse


def command_parser(tool: str, doc: str, epilog_from: int = 1, description_at: int = 0) -> argparse.ArgumentParser:
    """The argparse parser of `python -m tools.TOOL`: the module docstring's paragraph `description_at` as the
    description, its paragraphs from `epilog_from` on as the epilog (kept as written)."""
    paragraphs = doc.split("\n\n")
    return argparse.ArgumentParser(prog=f"python -m tools.{tool}", description=paragraphs[description_at],
                                   epilog="\n\n".join(paragraphs[epilog_from:]),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
