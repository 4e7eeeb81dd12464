"""The wire format shared by nodes and clients."""
