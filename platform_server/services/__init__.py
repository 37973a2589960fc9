"""Service layer: plain functions taking a unit of work; the gRPC servicers and the CLI both call these."""
