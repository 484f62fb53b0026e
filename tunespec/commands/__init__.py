"""One module per command: `tunespec VERB` runs `tunespec.commands.VERB.run(...)`, which returns the exit
code.

`tunespec.cli` declares the commands and their options; the work is here. Human text goes to stderr
(progress, messages) and stdout (tables); with `--json` stdout carries exactly one JSON document.
"""
