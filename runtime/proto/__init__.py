"""Protocol definitions (.proto) and their generated gRPC modules."""
