//! The conformance suite every [`Store`](super::Store) backend must pass (filled in below).
