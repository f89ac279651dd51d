"""The `jem-bot` commands, one module each: `add_arguments(parser)` and `run(settings, args)`.

`bot.cli` lists them; what they share is in `bot.runtime`. Kept empty: every command imports
`bot.runtime`, and whatever this file imported would be paid by each of them, `--help` included.
"""
