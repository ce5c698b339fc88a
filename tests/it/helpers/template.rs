//! `template.yaml` as data. CloudFormation's short-form tags (`!Ref`, `!GetAtt`, `!Sub`) are
//! ordinary YAML tags, which serde_yaml keeps as tagged values, so the file parses as it is.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_yaml::Value;

/// The whole template, parsed once per test process.
pub fn template() -> &'static Value {
    static TEMPLATE: OnceLock<Value> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
    })
}

/// `Resources.<logical_id>`, panicking with the id when it is not declared.
pub fn resource(logical_id: &str) -> &'static Value {
    template()
        .get("Resources")
        .and_then(|r| r.get(logical_id))
        .unwrap_or_else(|| panic!("template.yaml declares no resource {logical_id}"))
}

/// `Resources.<logical_id>.Properties` deserialized as `T` (fields `T` does not name are ignored),
/// as a stack with every parameter at its default gets them ([`at_defaults`]).
pub fn properties<T: for<'de> Deserialize<'de>>(logical_id: &str) -> T {
    let props = resource(logical_id)
        .get("Properties")
        .unwrap_or_else(|| panic!("{logical_id} has no Properties"));
    serde_yaml::from_value(at_defaults(props))
        .unwrap_or_else(|e| panic!("{logical_id}.Properties: {e}"))
}

/// `value` as CloudFormation resolves it with every parameter at its default: each
/// `!If [Condition, a, b]` is the branch its condition takes, and a list element that is
/// `!Ref AWS::NoValue` is dropped. Conditions may use `!Equals`, `!Not`, `!Or`, `!And` and
/// `!Condition` over `!Ref <Parameter>` and literals; anything else panics (teach it).
pub fn at_defaults(value: &Value) -> Value {
    with_parameters(value, &[])
}

/// [`at_defaults`] with the parameters of `set` (name, value) set instead.
pub fn with_parameters(value: &Value, set: &[(&str, &str)]) -> Value {
    let no_value = |v: &Value| matches!(v, Value::Tagged(t) if t.tag == "!Ref" && t.value.as_str() == Some("AWS::NoValue"));
    match value {
        Value::Tagged(t) if t.tag == "!If" => {
            let args = t.value.as_sequence().expect("!If [Condition, then, else]");
            let name = args[0].as_str().expect("!If names a condition");
            with_parameters(&args[if holds(condition(name), set) { 1 } else { 2 }], set)
        }
        Value::Sequence(items) => Value::Sequence(
            items
                .iter()
                .map(|v| with_parameters(v, set))
                .filter(|v| !no_value(v))
                .collect(),
        ),
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .map(|(k, v)| (k.clone(), with_parameters(v, set)))
                .filter(|(_, v)| !no_value(v))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `Conditions.<name>`.
fn condition(name: &str) -> &'static Value {
    template()
        .get("Conditions")
        .and_then(|c| c.get(name))
        .unwrap_or_else(|| panic!("template.yaml declares no condition {name}"))
}

fn holds(c: &Value, set: &[(&str, &str)]) -> bool {
    let Value::Tagged(t) = c else {
        panic!("a condition {c:?}: teach the harness");
    };
    let args = || t.value.as_sequence().map(Vec::as_slice).unwrap_or_default();
    if t.tag == "!Equals" {
        scalar(&args()[0], set) == scalar(&args()[1], set)
    } else if t.tag == "!Not" {
        !holds(&args()[0], set)
    } else if t.tag == "!Or" {
        args().iter().any(|c| holds(c, set))
    } else if t.tag == "!And" {
        args().iter().all(|c| holds(c, set))
    } else if t.tag == "!Condition" {
        holds(condition(t.value.as_str().expect("!Condition name")), set)
    } else {
        panic!("condition function {}: teach the harness", t.tag)
    }
}

/// A literal, or a parameter's value (`set`, else its default), as text.
fn scalar(v: &Value, set: &[(&str, &str)]) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("{other:?}: teach the harness"),
    };
    match v {
        Value::Tagged(t) if t.tag == "!Ref" => {
            let name = t.value.as_str().expect("!Ref name");
            if let Some((_, value)) = set.iter().find(|(n, _)| *n == name) {
                return (*value).to_owned();
            }
            let default = template()
                .get("Parameters")
                .and_then(|p| p.get(name))
                .and_then(|p| p.get("Default"))
                .unwrap_or_else(|| panic!("parameter {name} has no default"));
            text(default)
        }
        other => text(other),
    }
}

/// The parts of an `AWS::DynamoDB::Table` an emulator table is built from.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableProperties {
    pub attribute_definitions: Vec<AttributeDefinition>,
    pub key_schema: Vec<KeySchemaElement>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<GlobalSecondaryIndex>,
    pub billing_mode: Option<String>,
    pub time_to_live_specification: Option<TimeToLiveSpecification>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimeToLiveSpecification {
    pub attribute_name: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDefinition {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeySchemaElement {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GlobalSecondaryIndex {
    pub index_name: String,
    pub key_schema: Vec<KeySchemaElement>,
    pub projection: Projection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Projection {
    pub projection_type: String,
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

/// The attributes of `Resources.<logical_id>` (an `AWS::SQS::Queue`) as `CreateQueue` takes them
/// (name → string value); `!GetAtt <Queue>.Arn` inside the redrive policy resolves through `arns`.
/// Shared with the benchmarks (`bench/src/moto.rs`), which create the same queues.
pub fn queue_attributes(logical_id: &str, arns: &HashMap<&str, String>) -> Vec<(String, String)> {
    let props = resource(logical_id)
        .get("Properties")
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("{logical_id} has no Properties"));
    let scalar = |v: &Value| match v {
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => panic!("{logical_id}: the harness does not read {other:?}; teach it"),
    };
    let mut attrs = Vec::new();
    for (k, v) in props {
        let key = k.as_str().expect("property names are strings");
        match key {
            "QueueName" | "Tags" => {}
            "RedrivePolicy" => {
                let target = match &v["deadLetterTargetArn"] {
                    Value::Tagged(t) if t.tag == "!GetAtt" => {
                        let target = t.value.as_str().expect("!GetAtt X.Arn");
                        let queue = target
                            .strip_suffix(".Arn")
                            .unwrap_or_else(|| panic!("{logical_id}: redrive to {target}"));
                        arns.get(queue)
                            .unwrap_or_else(|| panic!("{logical_id}: create {queue} first"))
                            .clone()
                    }
                    other => panic!("{logical_id}: deadLetterTargetArn {other:?}"),
                };
                let policy = serde_json::json!({
                    "deadLetterTargetArn": target,
                    "maxReceiveCount": v["maxReceiveCount"].as_u64().expect("maxReceiveCount"),
                });
                attrs.push((key.to_owned(), policy.to_string()));
            }
            other => attrs.push((other.to_owned(), scalar(v))),
        }
    }
    attrs
}
