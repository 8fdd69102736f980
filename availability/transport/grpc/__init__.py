"""The gRPC face: servicer, wire encoding, validation, hit memo, tokens, TLS, health."""
