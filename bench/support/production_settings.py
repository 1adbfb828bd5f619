"""The project's settings as ``DEBUG=true`` fills them (development credentials, plaintext to devnet), run with
``DEBUG`` off: what a production worker does per query (no query log, no debug cursor), for the benchmarks of
worker processes that talk to devnet."""

from gxbackend.settings import *  # noqa: F403 - the real settings, unchanged but for DEBUG

DEBUG = False
