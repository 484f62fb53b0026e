"""The local tuning engine: Google's Generative Language tuning API served on this machine.

Needs the `local` extra (torch, transformers, peft, fastapi, uvicorn). Only modules in this
package may import those.
"""
