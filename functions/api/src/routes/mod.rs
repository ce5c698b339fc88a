//! Route handlers: extract input, call one core service method, map the result.

pub mod webhooks;
