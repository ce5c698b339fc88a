//! `template.yaml` declares what the code uses: the table's indexes, the environment variable the
//! store's config reads, the function build settings. (The DynamoDB tests go further: they build
//! their tables from the template, so any attribute or index it lacks fails them.)

use serde_yaml::Value;
use webhooks_aws::DynamoDbConfig;
use webhooks_aws::dynamodb::{BY_BUCKET_INDEX, BY_OWNER_INDEX};

use crate::helpers::template::{TableProperties, properties, resource, template};

fn tag_of(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string(), &t.value)),
        _ => None,
    }
}

#[test]
fn template_parses_with_its_cloudformation_tags_and_is_a_sam_template() {
    // GIVEN / WHEN template.yaml is parsed as plain YAML
    let t = template();
    // THEN it is a SAM template with the parameters the functions need
    assert_eq!(t["Transform"].as_str(), Some("AWS::Serverless-2016-10-31"));
    assert_eq!(t["Parameters"]["JwtSecret"]["NoEcho"].as_bool(), Some(true));
    assert!(t["Parameters"]["JwtSecret"]["MinLength"].as_u64() >= Some(32));
    assert!(t["Parameters"]["LogLevel"].is_mapping());
    assert!(t["Outputs"]["ApiUrl"].is_mapping() && t["Outputs"]["WebhooksTableName"].is_mapping());
}

#[test]
fn webhooks_table_declares_the_indexes_the_store_queries() {
    // GIVEN the table definition
    let props: TableProperties = properties("WebhooksTable");
    // THEN its key is `id`, and both indexes the store queries exist, keyed as the store expects
    assert_eq!(props.key_schema.len(), 1);
    assert_eq!(props.key_schema[0].attribute_name, "id");
    for (index, hash) in [(BY_OWNER_INDEX, "ownerId"), (BY_BUCKET_INDEX, "bucketId")] {
        let gsi = props
            .global_secondary_indexes
            .iter()
            .find(|g| g.index_name == index)
            .unwrap_or_else(|| panic!("template.yaml lacks index {index}"));
        let keys: Vec<(&str, &str)> = gsi
            .key_schema
            .iter()
            .map(|k| (k.attribute_name.as_str(), k.key_type.as_str()))
            .collect();
        assert_eq!(keys, [(hash, "HASH"), ("id", "RANGE")], "{index}");
        assert_eq!(gsi.projection.projection_type, "ALL", "{index}");
    }
    let table = &resource("WebhooksTable")["Properties"];
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        table["SSESpecification"]["SSEEnabled"].as_bool(),
        Some(true)
    );
}

#[test]
fn api_function_gets_the_table_name_the_store_config_reads() {
    // GIVEN the API function's definition
    let f = resource("ApiFunction");
    // THEN it is built by cargo-lambda from the api crate, and its table variable refers to the
    // webhooks table under the name DynamoDbConfig reads
    assert_eq!(
        f["Metadata"]["BuildMethod"].as_str(),
        Some("rust-cargolambda")
    );
    assert_eq!(f["Properties"]["CodeUri"].as_str(), Some("./functions/api"));
    let vars = &f["Properties"]["Environment"]["Variables"];
    let (tag, value) = tag_of(&vars[DynamoDbConfig::TABLE_ENV]).expect("a !Ref");
    assert_eq!(
        (tag.as_str(), value.as_str()),
        ("!Ref", Some("WebhooksTable"))
    );
    let (tag, value) = tag_of(&vars["JWT_SECRET"]).expect("a !Ref");
    assert_eq!((tag.as_str(), value.as_str()), ("!Ref", Some("JwtSecret")));
    let globals = &template()["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Handler"].as_str(), Some("bootstrap"));
}
