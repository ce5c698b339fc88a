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

#[test]
fn deliveries_table_declares_the_keys_index_and_ttl_the_delivery_log_uses() {
    use webhooks_aws::dynamodb::BY_TIME_INDEX;
    use webhooks_aws::dynamodb::delivery_log::key;
    // GIVEN the table definition
    let props: TableProperties = properties("DeliveriesTable");
    // THEN its key, its time-ordered index and its TTL attribute are the ones the log uses
    let keys: Vec<(&str, &str)> = props
        .key_schema
        .iter()
        .map(|k| (k.attribute_name.as_str(), k.key_type.as_str()))
        .collect();
    assert_eq!(keys, [(key::WEBHOOK_ID, "HASH"), (key::SK, "RANGE")]);
    let gsi = props
        .global_secondary_indexes
        .iter()
        .find(|g| g.index_name == BY_TIME_INDEX)
        .expect("byTime index");
    let keys: Vec<(&str, &str)> = gsi
        .key_schema
        .iter()
        .map(|k| (k.attribute_name.as_str(), k.key_type.as_str()))
        .collect();
    assert_eq!(keys, [(key::WEBHOOK_ID, "HASH"), (key::LIST_KEY, "RANGE")]);
    assert_eq!(gsi.projection.projection_type, "ALL");
    let ttl = props.time_to_live_specification.expect("TTL");
    assert_eq!(
        (ttl.attribute_name.as_str(), ttl.enabled),
        (key::EXPIRES_AT, true)
    );
    let table = resource("DeliveriesTable");
    assert_eq!(table["DeletionPolicy"].as_str(), Some("Retain"));
    assert_eq!(
        table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
            .as_bool(),
        Some(true)
    );
    assert_eq!(
        table["Properties"]["SSESpecification"]["SSEEnabled"].as_bool(),
        Some(true)
    );
}

#[test]
fn delivery_queue_outlives_the_longest_schedule_and_redrives_above_the_most_attempts() {
    use webhooks_core::webhook::RetryConfig;
    // GIVEN the queues and the delivery function
    let q = &resource("DeliveryQueue")["Properties"];
    let dlq = &resource("DeadLetterQueue")["Properties"];
    let timeout = resource("DeliveryFunction")["Properties"]["Timeout"]
        .as_u64()
        .expect("DeliveryFunction Timeout");
    // THEN a message stays invisible for at least 6 function timeouts (AWS's advice), and lives
    // through the longest retry schedule (20 retries of at most 12 h)
    assert!(q["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout);
    let longest = u64::from(RetryConfig::MAX_RETRIES) * RetryConfig::MAX_DELAY_SECONDS;
    assert!(q["MessageRetentionPeriod"].as_u64().unwrap() > longest);
    assert_eq!(dlq["MessageRetentionPeriod"].as_u64(), Some(1_209_600));
    // AND both hold messages up to the size the adapter batches by (and no larger)
    let limit = webhooks_aws::sqs::MAX_SQS_MESSAGE_BYTES as u64;
    assert_eq!(q["MaximumMessageSize"].as_u64(), Some(limit));
    assert_eq!(dlq["MaximumMessageSize"].as_u64(), Some(limit));
    // AND the redrive policy catches only what exceeds the most attempts a webhook may ask for
    let redrive = &q["RedrivePolicy"];
    assert!(redrive["maxReceiveCount"].as_u64().unwrap() > u64::from(RetryConfig::MAX_RETRIES + 1));
    let (tag, target) = tag_of(&redrive["deadLetterTargetArn"]).expect("a !GetAtt");
    assert_eq!(
        (tag.as_str(), target.as_str()),
        ("!GetAtt", Some("DeadLetterQueue.Arn"))
    );
    // AND an alarm watches the dead-letter queue's depth
    let alarm = &resource("DeadLetterQueueAlarm")["Properties"];
    assert_eq!(
        alarm["MetricName"].as_str(),
        Some("ApproximateNumberOfMessagesVisible")
    );
    assert_eq!(
        alarm["ComparisonOperator"].as_str(),
        Some("GreaterThanThreshold")
    );
    assert_eq!(alarm["Threshold"].as_u64(), Some(0));
}

#[test]
fn delivery_function_reads_the_variables_its_config_reads_and_reports_batch_item_failures() {
    use webhooks_aws::{DeliveryLogConfig, SqsConfig, SqsWorkerConfig};
    use webhooks_delivery::DeliveryConfig;
    // GIVEN the delivery function's definition
    let f = resource("DeliveryFunction");
    assert_eq!(
        f["Metadata"]["BuildMethod"].as_str(),
        Some("rust-cargolambda")
    );
    let props = &f["Properties"];
    assert_eq!(props["CodeUri"].as_str(), Some("./functions/delivery"));
    // THEN every variable its config reads refers to the right resource or parameter
    let vars = &props["Environment"]["Variables"];
    for (name, target) in [
        (DynamoDbConfig::TABLE_ENV, "WebhooksTable"),
        (DeliveryLogConfig::TABLE_ENV, "DeliveriesTable"),
        (SqsConfig::QUEUE_ENV, "DeliveryQueue"),
        (SqsWorkerConfig::DLQ_ENV, "DeadLetterQueue"),
        (DeliveryConfig::TIMEOUT_ENV, "DeliveryTimeoutSeconds"),
    ] {
        let (tag, value) = tag_of(&vars[name]).unwrap_or_else(|| panic!("{name} is not a !Ref"));
        assert_eq!(
            (tag.as_str(), value.as_str()),
            ("!Ref", Some(target)),
            "{name}"
        );
    }
    assert!(
        vars.get(DeliveryConfig::ALLOW_PRIVATE_ENV).is_none(),
        "never in production"
    );
    // AND the SQS event source reports partial batch failures (without it, the response is
    // ignored and one failure retries the whole batch)
    let source = props["Events"]
        .as_mapping()
        .unwrap()
        .values()
        .find(|e| e["Type"].as_str() == Some("SQS"))
        .expect("an SQS event source");
    let (tag, queue) = tag_of(&source["Properties"]["Queue"]).expect("!GetAtt");
    assert_eq!(
        (tag.as_str(), queue.as_str()),
        ("!GetAtt", Some("DeliveryQueue.Arn"))
    );
    let types: Vec<&str> = source["Properties"]["FunctionResponseTypes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(types, ["ReportBatchItemFailures"]);
    assert_eq!(source["Properties"]["BatchSize"].as_u64(), Some(10));
    // AND the batching window stays well inside the margin the handler leaves below 12 h
    let window = source["Properties"]["MaximumBatchingWindowInSeconds"]
        .as_u64()
        .unwrap();
    assert!(window * 10 <= webhooks_delivery::RECEIPT_MARGIN.as_secs());
}

#[test]
fn api_function_can_enqueue_deliveries_and_read_the_delivery_log() {
    use webhooks_aws::{DeliveryLogConfig, SqsConfig};
    let props = &resource("ApiFunction")["Properties"];
    let vars = &props["Environment"]["Variables"];
    for (name, target) in [
        (DeliveryLogConfig::TABLE_ENV, "DeliveriesTable"),
        (SqsConfig::QUEUE_ENV, "DeliveryQueue"),
    ] {
        let (tag, value) = tag_of(&vars[name]).unwrap_or_else(|| panic!("{name} is not a !Ref"));
        assert_eq!(
            (tag.as_str(), value.as_str()),
            ("!Ref", Some(target)),
            "{name}"
        );
    }
    let policies = format!("{:?}", props["Policies"]);
    assert!(policies.contains("SQSSendMessagePolicy") && policies.contains("DeliveryQueue"));
    assert!(policies.contains("DeliveriesTable"));
    // AND every route of the delivery API is mapped
    let paths: Vec<&str> = props["Events"]
        .as_mapping()
        .unwrap()
        .values()
        .filter_map(|e| e["Properties"]["Path"].as_str())
        .collect();
    for path in [
        "/api/events",
        "/api/webhooks/{id}/test",
        "/api/webhooks/{id}/deliveries",
        "/api/webhooks/{id}/dead-letters",
        "/api/webhooks/{id}/deliveries/redeliver",
        "/api/webhooks/{id}/deliveries/{deliveryId}/redeliver",
    ] {
        assert!(paths.contains(&path), "no route for {path}");
    }
}
