//! What the three benchmark commands share (`webhooks-bench`: the local mode's delivery
//! benchmark, `src/main.rs`; `lambda-bench`: the Lambda functions as processes, `src/lambda.rs`;
//! `lambda-cost`: what a delivery costs on AWS, `src/cost.rs`). Commands, not tests: each prints
//! its figures and, with `--write FILE`, records them as a section of BENCHMARKS.md
//! ([`report::write_section`]).
//!
//! - [`moto`]: moto server, and the tables and queues of `template.yaml` created on it.
//! - [`aws_meter`]: a recording proxy in front of moto that counts and sizes every AWS call.
//! - [`runtime_api`]: a minimal Lambda Runtime API driving a function binary as a process.
//! - [`functions`]: the Lambda environment, the API's tokens, one HTTP call through the API.
//! - [`receiver`]: the webhook receiver that verifies every delivery's signatures.
//! - [`sqs`]: the SQS event source mapping's calls and the event it hands a function.
//! - [`service`]: the local mode as a process, the machine's description, the command line.
//! - [`report`]: a section of BENCHMARKS.md, appended or replaced in place.

pub mod aws_meter;
pub mod functions;
pub mod moto;
pub mod receiver;
pub mod report;
pub mod runtime_api;
pub mod service;
pub mod sqs;
