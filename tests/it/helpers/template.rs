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

/// `Resources.<logical_id>.Properties` deserialized as `T` (fields `T` does not name are ignored).
pub fn properties<T: for<'de> Deserialize<'de>>(logical_id: &str) -> T {
    let props = resource(logical_id)
        .get("Properties")
        .unwrap_or_else(|| panic!("{logical_id} has no Properties"));
    serde_yaml::from_value(props.clone()).unwrap_or_else(|e| panic!("{logical_id}.Properties: {e}"))
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
