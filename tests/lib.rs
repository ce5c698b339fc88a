//! Integration tests live in `it/`; this library is empty on purpose (Cargo needs a target).
