"""`python -m tests.crash.sandbox_main`: the sandbox server process the crash tests run against.

`run_sandbox` (what `bot sandbox` serves) with the branch size, credentials and callback
address on the command line, and optionally the bank's export of that branch written to a
file, so a test can import it into the bot.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.sandbox.server import run_sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--callback-url", default=None)
    parser.add_argument("--corp-id", required=True)
    parser.add_argument("--agent-id", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--aes-key", required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--managers", type=int, default=5)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--groups", type=int, default=12)
    parser.add_argument("--bank-file", type=Path, default=None)
    args = parser.parse_args()
    run_sandbox(
        "127.0.0.1",
        args.port,
        callback_url=args.callback_url,
        corp_id=args.corp_id,
        agent_id=args.agent_id,
        secret=args.secret,
        token=args.token,
        encoding_aes_key=args.aes_key,
        seed=args.seed,
        managers=args.managers,
        customers=args.customers,
        groups=args.groups,
        bank_file=args.bank_file,
    )


if __name__ == "__main__":
    main()
