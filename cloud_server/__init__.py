"""The cloud half: FastAPI over ONNX Runtime task decoders, with dynamic batching."""
