//! The API Lambda: wiring only. Tracing, config from the environment, SDK clients built once,
//! then `lambda_http` serves the same Router the local mode serves.
fn main() {}
