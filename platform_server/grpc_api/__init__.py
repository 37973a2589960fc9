"""gRPC entrypoints: thin servicers that translate proto to service calls and back."""
