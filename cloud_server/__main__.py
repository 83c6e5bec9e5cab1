"""`python -m cloud_server`: serve with settings from DEVTUNE_CLOUD_* variables."""

from cloud_server.serve import serve
from cloud_server.settings import CloudSettings

if __name__ == "__main__":
    serve(CloudSettings())
