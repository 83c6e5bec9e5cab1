"""`python -m cloud_server`: serve with settings from DEVTUNE_CLOUD_* variables."""

import sys

from pydantic import ValidationError

from cloud_server.serve import serve
from cloud_server.settings import CloudSettings
from shared.errors import DeviceTuningError

if __name__ == "__main__":
    try:
        serve(CloudSettings())
    except (ValueError, ValidationError, DeviceTuningError) as exc:
        print(f"cloud_server: error: {exc}", file=sys.stderr)
        sys.exit(2)
