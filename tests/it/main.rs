//! The integration test binary (one binary, so one moto server serves every test of a run).
//!
//! - [`helpers`]: the moto server harness, `template.yaml` reading, DynamoDB fixtures.
//! - [`dynamodb`]: `DynamoDbSubscriptionStore` against DynamoDB in moto, on tables built from
//!   `template.yaml`.
//! - [`template`]: `template.yaml` declares what the code uses.
//!
//! Needs moto (`./infra/setup-venv.sh` installs it into `./.venv`); a missing moto fails the
//! tests with that instruction, it never skips them.

mod dynamodb;
mod helpers;
mod template;
