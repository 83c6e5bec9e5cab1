"""The contract between device and cloud: wire protocol, codecs, bundle manifest, errors.

Imports nothing else of this project; needs only numpy, msgpack and pydantic.
"""
