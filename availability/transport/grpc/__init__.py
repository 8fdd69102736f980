"""The gRPC face: servicer, wire encoding, validation, interceptors, tokens, TLS, health."""
