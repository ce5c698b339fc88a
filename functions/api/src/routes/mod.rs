//! Route handlers: extract input, call one core service method, map the result.

pub mod deliveries;
pub mod events;
pub mod notifications;
pub mod webhooks;
