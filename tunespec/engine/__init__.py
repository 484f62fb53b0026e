"""The local tuning engine: Google's Generative Language tuning API served on this machine.

Needs the `local` extra (torch, transformers, peft, fastapi, uvicorn). Only modules in this
package may import those, and only lazily where the client side imports the module (`server`
to start or find an engine, `datadir` for the data dir's default).
"""
