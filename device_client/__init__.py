"""The device half: ONNX encoder + compressor, codec, and an HTTP client. No torch here."""

from device_client.client import DeviceClient, Result
from device_client.encoder import DeviceEncoder, Encoded

__all__ = ["DeviceClient", "DeviceEncoder", "Encoded", "Result"]
