"""The device half: ONNX encoder + compressor, codec, and an HTTP client. No torch here."""

from device_client.chooser import PathChooser
from device_client.client import MODES, DeviceClient, Mode, Result
from device_client.decoders import LocalDecoders
from device_client.encoder import DeviceEncoder, Encoded

__all__ = ["MODES", "DeviceClient", "DeviceEncoder", "Encoded", "LocalDecoders", "Mode", "PathChooser", "Result"]
