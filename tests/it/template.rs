//! `template.yaml` declares what the code uses: the tables' keys, indexes and TTL (checked
//! against the adapters' constants and against the items they write), the environment variables
//! the configs read, the function build settings. And it has the properties a deployment depends
//! on that linters do not check: the event source reports partial batch failures, the queues'
//! visibility, retention and redrive fit the retry schedule, both functions are arm64 Rust on
//! provided.al2023, every path the Router serves is routed to the API, the JWT secret is never a
//! literal, and each function may do exactly what its code does. (The DynamoDB tests go further:
//! they build their tables from the template, so any attribute or index it lacks fails them.)

use serde_yaml::Value;
use webhooks_aws::DynamoDbConfig;
use webhooks_aws::dynamodb::{
    BY_BUCKET_INDEX, BY_OWNER_INDEX, FAN_OUT_ATTRIBUTES, LEGACY_BY_OWNER_INDEX,
};

use crate::helpers::template::{TableProperties, properties, resource, template, with_parameters};

fn tag_of(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string(), &t.value)),
        _ => None,
    }
}

/// A function's effective setting: its own property, else the template's `Globals.Function`.
fn function_setting(logical_id: &str, key: &str) -> &'static Value {
    let own = &resource(logical_id)["Properties"][key];
    if own.is_null() {
        &template()["Globals"]["Function"][key]
    } else {
        own
    }
}

/// The properties of the delivery function's SQS event source mapping.
fn delivery_event_source() -> &'static Value {
    event_source_of("DeliveryQueue")
}

/// The properties of the delivery function's one event source mapping on `queue`.
fn event_source_of(queue: &str) -> &'static Value {
    let arn = format!("{queue}.Arn");
    let mappings: Vec<&Value> = template()["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::Lambda::EventSourceMapping"))
        .map(|r| &r["Properties"])
        .filter(|p| {
            tag_of(&p["FunctionName"]).map(|(t, v)| (t, v.as_str()))
                == Some(("!Ref".to_owned(), Some("DeliveryFunction")))
                && tag_of(&p["EventSourceArn"]).map(|(t, v)| (t, v.as_str()))
                    == Some(("!GetAtt".to_owned(), Some(arn.as_str())))
        })
        .collect();
    assert_eq!(
        mappings.len(),
        1,
        "one event source mapping of DeliveryFunction on {queue}"
    );
    mappings[0]
}

#[test]
fn template_parses_with_its_cloudformation_tags_and_is_a_sam_template() {
    // GIVEN / WHEN template.yaml is parsed as plain YAML
    let t = template();
    // THEN it is a SAM template with the parameters the functions need
    assert_eq!(t["Transform"].as_str(), Some("AWS::Serverless-2016-10-31"));
    assert_eq!(t["Parameters"]["JwtSecret"]["NoEcho"].as_bool(), Some(true));
    for knob in [
        "LogLevel",
        "DeliveryTimeoutSeconds",
        "DeliveryMaxConcurrency",
        "ApiThrottlingRateLimit",
        "ApiThrottlingBurstLimit",
    ] {
        assert!(t["Parameters"][knob].is_mapping(), "no parameter {knob}");
    }
    // AND its outputs name what a deployment needs: the API's URL, the queues, the tables
    for output in [
        "ApiUrl",
        "WebhooksTableName",
        "DeliveriesTableName",
        "DeliveryQueueUrl",
        "DeadLetterQueueUrl",
        "DeadLetterQueueArn",
    ] {
        assert!(
            matches!(t["Outputs"][output]["Value"], Value::Tagged(_)),
            "no output {output}"
        );
    }
}

#[test]
fn webhooks_table_declares_the_indexes_the_store_queries_projecting_only_what_they_read() {
    // GIVEN the table definition (a new stack: every parameter at its default)
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
        // AND the owner index holds keys only, the fan-out index exactly what the fan-out
        // decodes (FAN_OUT_ATTRIBUTES, held to the decoder by the aws crate's item tests):
        // no url, secret or header value is copied into either
        let mut projected = gsi.projection.non_key_attributes.clone();
        projected.sort();
        if index == BY_OWNER_INDEX {
            assert_eq!(gsi.projection.projection_type, "KEYS_ONLY", "{index}");
            assert!(projected.is_empty(), "{index}");
        } else {
            assert_eq!(gsi.projection.projection_type, "INCLUDE", "{index}");
            let mut want: Vec<String> = FAN_OUT_ATTRIBUTES.map(str::to_owned).to_vec();
            want.sort();
            assert_eq!(projected, want, "{index}");
        }
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
fn the_index_upgrade_changes_one_index_per_deploy_and_lists_from_an_index_that_exists() {
    // GIVEN the upgrade's steps in order, from a stack of the old template (byOwner and
    // byBucket, projection ALL)
    let indexes_at = |step: Option<&str>| -> Vec<String> {
        let props = &resource("WebhooksTable")["Properties"];
        let set: Vec<(&str, &str)> = step
            .map(|s| vec![("WebhookIndexUpgrade", s)])
            .unwrap_or_default();
        let resolved = with_parameters(props, &set);
        let props: TableProperties = serde_yaml::from_value(resolved).expect("table");
        let mut names: Vec<String> = props
            .global_secondary_indexes
            .into_iter()
            .map(|g| g.index_name)
            .collect();
        names.sort();
        names
    };
    let owner_index_at = |step: &str| -> Option<String> {
        let vars = &resource("ApiFunction")["Properties"]["Environment"]["Variables"];
        let resolved = with_parameters(vars, &[("WebhookIndexUpgrade", step)]);
        resolved
            .get(DynamoDbConfig::OWNER_INDEX_ENV)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut before = vec![LEGACY_BY_OWNER_INDEX.to_owned(), "byBucket".to_owned()];
    for step in ["1", "2", "3", "done"] {
        let after = indexes_at(Some(step));
        // THEN each deploy creates or deletes exactly one index (CloudFormation's limit)
        let added: Vec<&String> = after.iter().filter(|i| !before.contains(i)).collect();
        let dropped: Vec<&String> = before.iter().filter(|i| !after.contains(i)).collect();
        assert_eq!(
            added.len() + dropped.len(),
            1,
            "step {step}: +{added:?} -{dropped:?}"
        );
        // AND the fan-out index the code reads exists from the first step on
        assert!(after.contains(&BY_BUCKET_INDEX.to_owned()), "step {step}");
        // AND the API lists from an owner index the table has at that step
        let owner = owner_index_at(step).unwrap_or_else(|| BY_OWNER_INDEX.to_owned());
        assert!(after.contains(&owner), "step {step}: lists from {owner}");
        before = after;
    }
    // AND the default is the last step: only the two narrow indexes
    assert_eq!(indexes_at(None), before);
    let mut want = vec![BY_BUCKET_INDEX.to_owned(), BY_OWNER_INDEX.to_owned()];
    want.sort();
    assert_eq!(before, want);
    assert_eq!(owner_index_at("done"), None);
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
    assert!(
        vars.get("JWT_SECRET").is_some(),
        "JWT_SECRET (see the JWT test)"
    );
    // AND both functions get the secrets key's ARN under the name DynamoDbConfig reads
    for function in ["ApiFunction", "DeliveryFunction"] {
        let vars = &resource(function)["Properties"]["Environment"]["Variables"];
        let (tag, value) = tag_of(&vars[DynamoDbConfig::SECRETS_KEY_ENV]).expect("a !GetAtt");
        assert_eq!(
            (tag.as_str(), value.as_str()),
            ("!GetAtt", Some("SecretsKey.Arn")),
            "{function}"
        );
    }
    assert_eq!(
        resource("SecretsKey")["Type"].as_str(),
        Some("AWS::KMS::Key")
    );
}

#[test]
fn api_function_token_rules_come_from_parameters_and_fail_closed_by_default() {
    // GIVEN the API function's variables and the template's parameters
    let t = template();
    let vars = &resource("ApiFunction")["Properties"]["Environment"]["Variables"];
    // THEN each token rule the API config reads is a !Ref to its parameter
    for (name, parameter, default) in [
        ("OPEN_BUCKETS", "OpenBuckets", "false"),
        ("JWT_AUDIENCE", "JwtAudience", ""),
        ("JWT_ISSUER", "JwtIssuer", ""),
    ] {
        let (tag, value) = tag_of(&vars[name]).unwrap_or_else(|| panic!("{name} is not a !Ref"));
        assert_eq!((tag.as_str(), value.as_str()), ("!Ref", Some(parameter)));
        // AND the defaults are the strict ones: no open buckets
        assert_eq!(
            t["Parameters"][parameter]["Default"].as_str(),
            Some(default),
            "{parameter}"
        );
    }
    // AND the API reads them as such
    let config = webhooks_api::config::ApiConfig::from_lookup(|k| match k {
        "JWT_SECRET" => Some("x".repeat(32)),
        "OPEN_BUCKETS" => t["Parameters"]["OpenBuckets"]["Default"]
            .as_str()
            .map(str::to_owned),
        _ => None,
    })
    .unwrap();
    assert!(!config.token_rules.open_buckets);
    // AND JWKS_URL is set only when the JwksUrl parameter is (default empty: HS256 only), and the
    // parameter accepts only what the API accepts
    let (tag, branches) = tag_of(&vars["JWKS_URL"]).expect("JWKS_URL is an !If");
    assert_eq!(tag, "!If");
    assert_eq!(branches[0].as_str(), Some("HasJwksUrl"));
    assert_eq!(
        tag_of(&branches[1]).map(|(t, v)| (t, v.as_str().map(str::to_owned))),
        Some(("!Ref".to_owned(), Some("JwksUrl".to_owned())))
    );
    assert_eq!(
        tag_of(&branches[2]).map(|(t, v)| (t, v.as_str().map(str::to_owned))),
        Some(("!Ref".to_owned(), Some("AWS::NoValue".to_owned())))
    );
    let param = &t["Parameters"]["JwksUrl"];
    assert_eq!(param["Default"].as_str(), Some(""));
    assert_eq!(param["AllowedPattern"].as_str(), Some("^(https://.+)?$"));
    assert!(
        webhooks_api::jwks::check_url("https://idp.example.com/.well-known/jwks.json").is_ok()
            && webhooks_api::jwks::check_url("http://idp.example.com/jwks").is_err()
    );
}

#[test]
fn deliveries_table_declares_the_keys_and_ttl_the_delivery_log_uses() {
    use webhooks_aws::dynamodb::delivery_log::key;
    // GIVEN the table definition
    let props: TableProperties = properties("DeliveriesTable");
    // THEN its key and its TTL attribute are the ones the log uses
    let keys: Vec<(&str, &str)> = props
        .key_schema
        .iter()
        .map(|k| (k.attribute_name.as_str(), k.key_type.as_str()))
        .collect();
    assert_eq!(keys, [(key::WEBHOOK_ID, "HASH"), (key::SK, "RANGE")]);
    // AND no index: the history and the dead letters are queries on the table itself
    assert!(props.global_secondary_indexes.is_empty());
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
fn a_publish_and_every_sdk_call_end_before_the_functions_time_out() {
    use webhooks_aws::config::{SDK_OPERATION_TIMEOUT, sdk_timeouts};
    use webhooks_core::delivery_service::PUBLISH_BUDGET;
    // GIVEN the functions' timeouts in the template
    let secs = |f: &str| {
        std::time::Duration::from_secs(function_setting(f, "Timeout").as_u64().expect("Timeout"))
    };
    let (api, delivery) = (secs("ApiFunction"), secs("DeliveryFunction"));
    // THEN a publish answers (within its budget) with at least 3 s to spare for the answer
    assert!(
        PUBLISH_BUDGET + std::time::Duration::from_secs(3) <= api,
        "{PUBLISH_BUDGET:?} vs {api:?}"
    );
    // AND one SDK call, retries included, ends before a publish's budget and the delivery
    // function's timeout
    assert_eq!(
        sdk_timeouts().operation_timeout(),
        Some(SDK_OPERATION_TIMEOUT)
    );
    assert!(SDK_OPERATION_TIMEOUT < PUBLISH_BUDGET && SDK_OPERATION_TIMEOUT < delivery);
}

#[test]
fn delivery_queue_outlives_the_longest_schedule_and_redrives_above_the_most_attempts() {
    use webhooks_core::webhook::RetryConfig;
    // GIVEN the queues and the delivery function
    let q = &resource("DeliveryQueue")["Properties"];
    let dlq = &resource("DeadLetterQueue")["Properties"];
    let timeout = function_setting("DeliveryFunction", "Timeout")
        .as_u64()
        .expect("DeliveryFunction Timeout");
    // THEN a message stays invisible for at least 6 function timeouts (AWS's advice), and lives
    // through the longest retry schedule (20 retries of at most 12 h)
    assert!(q["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout);
    let longest = u64::from(RetryConfig::MAX_RETRIES) * RetryConfig::MAX_DELAY_SECONDS;
    let retention = q["MessageRetentionPeriod"].as_u64().unwrap();
    assert!(retention > longest);
    // AND the dead-letter queue keeps messages longer than its source (a redriven message keeps
    // its original enqueue time: AWS's advice), SQS's longest
    let dlq_retention = dlq["MessageRetentionPeriod"].as_u64().unwrap();
    assert!(
        dlq_retention > retention,
        "DLQ {dlq_retention} s, source {retention} s"
    );
    assert_eq!(dlq_retention, 1_209_600);
    // AND both hold messages up to the size the adapter batches by (and no larger)
    let limit = webhooks_aws::sqs::MAX_SQS_MESSAGE_BYTES as u64;
    assert_eq!(q["MaximumMessageSize"].as_u64(), Some(limit));
    assert_eq!(dlq["MaximumMessageSize"].as_u64(), Some(limit));
    // AND the redrive policy catches only what exceeds the most attempts a webhook may ask for
    // (21 attempts at most), and not so far above that a crash loop lingers for long
    let redrive = &q["RedrivePolicy"];
    let most_attempts = u64::from(RetryConfig::MAX_RETRIES + 1);
    assert_eq!(most_attempts, 21);
    let max_receive = redrive["maxReceiveCount"].as_u64().unwrap();
    assert!(
        (most_attempts + 1..=100).contains(&max_receive),
        "maxReceiveCount {max_receive}"
    );
    // AND it is the core's guard, the one the embedded queue applies too
    assert_eq!(
        max_receive,
        u64::from(webhooks_core::flow::MAX_RECEIVE_COUNT)
    );
    let (tag, target) = tag_of(&redrive["deadLetterTargetArn"]).expect("a !GetAtt");
    assert_eq!(
        (tag.as_str(), target.as_str()),
        ("!GetAtt", Some("DeadLetterQueue.Arn"))
    );
    // AND the delivery function consumes the dead-letter queue (reconciling what the redrive
    // policy moved), reporting batch item failures so an unreadable message stays there; the
    // queue's visibility timeout is at least 6 function timeouts, as for an event source
    let reconciler = event_source_of("DeadLetterQueue");
    assert_eq!(
        reconciler["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    assert!(dlq["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout);
    // AND an alarm counts the messages received from the dead-letter queue (its depth stays
    // near 0 while the function consumes it)
    let alarm = &resource("DeadLetterQueueAlarm")["Properties"];
    assert_eq!(
        alarm["MetricName"].as_str(),
        Some("NumberOfMessagesReceived")
    );
    assert_eq!(alarm["Statistic"].as_str(), Some("Sum"));
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
        (SqsWorkerConfig::SLOW_QUEUE_ENV, "SlowQueue"),
        (DeliveryConfig::TIMEOUT_ENV, "DeliveryTimeoutSeconds"),
    ] {
        let (tag, value) = tag_of(&vars[name]).unwrap_or_else(|| panic!("{name} is not a !Ref"));
        assert_eq!(
            (tag.as_str(), value.as_str()),
            ("!Ref", Some(target)),
            "{name}"
        );
    }
    // AND private targets are allowed only when the functions run against a local emulator
    // (`EmulatorEndpointUrl`, empty by default: never in a deployment)
    let (tag, value) = tag_of(&vars[DeliveryConfig::ALLOW_PRIVATE_ENV])
        .expect("ALLOW_PRIVATE_TARGETS is an !If on UseEmulator, or absent");
    assert_eq!(tag, "!If");
    assert_eq!(value[0].as_str(), Some("UseEmulator"), "{value:?}");
    assert_eq!(
        template()["Parameters"]["EmulatorEndpointUrl"]["Default"].as_str(),
        Some("")
    );
    // AND the function's timeout it assumes for an unusable deadline is its Timeout
    assert_eq!(
        vars[DeliveryConfig::FUNCTION_TIMEOUT_ENV].as_str(),
        Some(
            props["Timeout"]
                .as_u64()
                .expect("Timeout")
                .to_string()
                .as_str()
        )
    );
    // AND the SQS event source reports partial batch failures (without it, the response is
    // ignored and one failure retries the whole batch)
    let source = delivery_event_source();
    let types: Vec<&str> = source["FunctionResponseTypes"]
        .as_sequence()
        .expect("FunctionResponseTypes")
        .iter()
        .map(|t| t.as_str().expect("a plain string"))
        .collect();
    assert_eq!(types, ["ReportBatchItemFailures"]);
    assert_eq!(source["BatchSize"].as_u64(), Some(10));
    // AND a whole batch to one webhook fits the delivery function's in-flight cap (no deferral of
    // part of every batch)
    assert_eq!(
        source["BatchSize"].as_u64(),
        Some(webhooks_delivery::MAX_IN_FLIGHT_PER_WEBHOOK as u64)
    );
    // AND the batching window stays well inside the margin the handler leaves below 12 h
    let window = source["MaximumBatchingWindowInSeconds"].as_u64().unwrap();
    assert!(window * 10 <= webhooks_delivery::RECEIPT_MARGIN.as_secs());
    // AND its concurrency is bounded by the parameter
    assert_eq!(
        tag_of(&source["ScalingConfig"]["MaximumConcurrency"]).map(|(t, v)| (t, v.as_str())),
        Some(("!Ref".to_owned(), Some("DeliveryMaxConcurrency")))
    );
    let min = template()["Parameters"]["DeliveryMaxConcurrency"]["MinValue"].as_u64();
    assert!(
        min >= Some(2),
        "SQS event sources need MaximumConcurrency >= 2"
    );
}

#[test]
fn the_slow_lane_is_a_queue_like_the_delivery_queue_with_an_event_source_of_its_own() {
    // GIVEN the two queues
    let q = &resource("DeliveryQueue")["Properties"];
    let slow = &resource("SlowQueue")["Properties"];
    // THEN the slow queue keeps a moved delivery as long, as large, as hidden per receipt and
    // with the same redrive as the delivery queue (a move changes nothing of its schedule)
    for key in [
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "MaximumMessageSize",
        "SqsManagedSseEnabled",
    ] {
        assert_eq!(slow[key], q[key], "{key}");
    }
    assert_eq!(
        slow["RedrivePolicy"]["maxReceiveCount"].as_u64(),
        Some(u64::from(webhooks_core::flow::MAX_RECEIVE_COUNT))
    );
    let (tag, target) = tag_of(&slow["RedrivePolicy"]["deadLetterTargetArn"]).expect("!GetAtt");
    assert_eq!(
        (tag.as_str(), target.as_str()),
        ("!GetAtt", Some("DeadLetterQueue.Arn"))
    );
    // AND the same function consumes it through a mapping of its own: partial batch failures,
    // a batch to one webhook within the in-flight cap, its own (small) concurrency parameter
    let source = event_source_of("SlowQueue");
    assert_eq!(
        source["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    assert_eq!(
        source["BatchSize"].as_u64(),
        Some(webhooks_delivery::MAX_IN_FLIGHT_PER_WEBHOOK as u64)
    );
    assert_eq!(
        tag_of(&source["ScalingConfig"]["MaximumConcurrency"]).map(|(t, v)| (t, v.as_str())),
        Some(("!Ref".to_owned(), Some("SlowLaneMaxConcurrency")))
    );
    let param = &template()["Parameters"]["SlowLaneMaxConcurrency"];
    assert!(
        param["MinValue"].as_u64() >= Some(2),
        "SQS event sources need >= 2"
    );
    assert!(
        param["Default"].as_u64()
            <= template()["Parameters"]["DeliveryMaxConcurrency"]["Default"].as_u64()
    );
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
    // (what it may do with them: see functions_may_do_exactly_what_their_code_does)
    assert!(props["Policies"].is_sequence());
}

#[test]
fn both_functions_are_rust_on_arm64_al2023_built_by_cargo_lambda_with_little_memory() {
    for (function, crate_dir) in [
        ("ApiFunction", "functions/api"),
        ("DeliveryFunction", "functions/delivery"),
    ] {
        // GIVEN a function's effective settings (its own, else Globals)
        let f = resource(function);
        // THEN it runs a `bootstrap` on provided.al2023 on Graviton, built by cargo-lambda from
        // its crate
        assert_eq!(
            function_setting(function, "Runtime").as_str(),
            Some("provided.al2023"),
            "{function}"
        );
        let arch: Vec<&str> = function_setting(function, "Architectures")
            .as_sequence()
            .unwrap_or_else(|| panic!("{function}: Architectures"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(arch, ["arm64"], "{function}");
        assert_eq!(
            function_setting(function, "Handler").as_str(),
            Some("bootstrap"),
            "{function}"
        );
        assert_eq!(
            f["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{function}"
        );
        let code_uri = f["Properties"]["CodeUri"].as_str().expect("CodeUri");
        assert_eq!(code_uri, format!("./{crate_dir}"), "{function}");
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(crate_dir)
            .join("Cargo.toml");
        assert!(manifest.is_file(), "{}", manifest.display());
        // AND it asks for little memory (Rust needs little; 128–256 MB)
        let memory = function_setting(function, "MemorySize")
            .as_u64()
            .expect("MemorySize");
        assert!((128..=256).contains(&memory), "{function}: {memory} MB");
    }
}

/// Every value the JWT secret may take: a `!Ref` to a parameter, or a `!Sub` string.
fn secret_sources(v: &Value, out: &mut Vec<(String, String)>) {
    match tag_of(v) {
        Some((tag, inner)) if tag == "!If" => {
            let branches = inner.as_sequence().expect("!If [cond, a, b]");
            assert_eq!(branches.len(), 3);
            secret_sources(&branches[1], out);
            secret_sources(&branches[2], out);
        }
        // Absent in that branch (the other source is used).
        Some((tag, inner)) if tag == "!Ref" && inner.as_str() == Some("AWS::NoValue") => {}
        Some((tag, inner)) => out.push((tag, inner.as_str().expect("a scalar").to_owned())),
        None => panic!("JWT_SECRET is a literal ({v:?}): it must come from a parameter"),
    }
}

#[test]
fn the_jwt_secret_is_a_no_echo_parameter_or_a_secrets_manager_reference_never_a_literal() {
    // GIVEN the API function's JWT_SECRET
    let t = template();
    let value = &resource("ApiFunction")["Properties"]["Environment"]["Variables"]["JWT_SECRET"];
    let mut sources = Vec::new();
    secret_sources(value, &mut sources);
    // THEN each value it may take is the NoEcho parameter or a Secrets Manager dynamic reference
    assert!(!sources.is_empty());
    for (tag, text) in &sources {
        match tag.as_str() {
            "!Ref" => {
                let p = &t["Parameters"][text.as_str()];
                assert_eq!(p["NoEcho"].as_bool(), Some(true), "{text} is not NoEcho");
                assert!(
                    p["Default"].as_str().is_none_or(str::is_empty),
                    "{text}: a default secret"
                );
            }
            other => panic!("JWT_SECRET from {other} {text}"),
        }
    }
    assert_eq!(sources, [("!Ref".to_owned(), "JwtSecret".to_owned())]);
    // AND with JwtSecretId the function gets the secret's ARN, not its value: nothing in the
    // template resolves a secret into the environment (readable with GetFunctionConfiguration)
    let vars = &resource("ApiFunction")["Properties"]["Environment"]["Variables"];
    let (tag, branches) = tag_of(&vars["JWT_SECRET_ID"]).expect("JWT_SECRET_ID is an !If");
    assert_eq!(tag, "!If");
    assert_eq!(branches[0].as_str(), Some("UseSecretsManager"));
    assert_eq!(
        tag_of(&branches[1]).map(|(t, v)| (t, v.as_str().map(str::to_owned))),
        Some(("!Ref".to_owned(), Some("JwtSecretId".to_owned())))
    );
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"),
    )
    .expect("template.yaml");
    assert!(
        !text.contains("{{resolve:"),
        "a dynamic reference resolves a secret at deploy time"
    );
    assert!(
        t["Parameters"]["JwtSecretId"]["AllowedPattern"]
            .as_str()
            .is_some_and(|p| p.contains("secretsmanager")),
        "JwtSecretId is an ARN (the policy allows exactly it)"
    );
    // AND a given JwtSecret is long enough for the API (which refuses < 32 bytes at cold start)
    let pattern = t["Parameters"]["JwtSecret"]["AllowedPattern"]
        .as_str()
        .expect("JwtSecret AllowedPattern");
    assert!(pattern.contains("{32,}"), "{pattern}");
    assert_eq!(webhooks_api::config::MIN_JWT_SECRET_BYTES, 32);
    // AND exactly one source must be given (a CloudFormation rule)
    assert_eq!(
        t["Rules"]["OneJwtSecret"]["Assertions"]
            .as_sequence()
            .map(Vec::len),
        Some(2)
    );
    // AND the delivery function never sees it
    assert!(
        resource("DeliveryFunction")["Properties"]["Environment"]["Variables"]
            .get("JWT_SECRET")
            .is_none()
    );
}

/// `(method, path)` of every request the API serves, with sample path parameters.
async fn served_requests() -> Vec<(String, String)> {
    let doc = serde_json::to_value(webhooks_api::openapi::serve().await.0).expect("OpenAPI JSON");
    let mut requests = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let concrete = path
            .replace("{id}", "507f1f77bcf86cd799439016")
            .replace("{deliveryId}", "65a4f0d11a2b3c4d5e6f0020")
            .replace("{delivery_id}", "65a4f0d11a2b3c4d5e6f0020")
            .replace("{jobId}", "rj-507f1f77bcf86cd799439016-0");
        assert!(
            !concrete.contains('{'),
            "an unknown path parameter in {path}"
        );
        for method in item.as_object().expect("path item").keys() {
            requests.push((method.to_uppercase(), concrete.clone()));
        }
    }
    assert!(requests.len() >= 12, "{requests:?}");
    for path in [
        "/api/openapi.json",
        "/health",
        "/dashboard",
        "/dashboard/",
        "/dashboard/app.js",
        "/dashboard/style.css",
        "/dashboard/dev-token",
    ] {
        requests.push(("GET".to_owned(), path.to_owned()));
    }
    requests
}

/// Whether an HTTP API route path (`{x}` one segment, `{x+}` the rest) matches `path`.
fn route_path_matches(route: &str, path: &str) -> bool {
    let mut want = route.trim_start_matches('/').split('/');
    let mut got = path.trim_start_matches('/').split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(_)) if w.starts_with('{') && w.ends_with("+}") => return true,
            (Some(w), Some(g)) if (w.starts_with('{') && w.ends_with('}')) || w == g => {}
            _ => return false,
        }
    }
}

#[tokio::test]
async fn every_path_the_router_serves_reaches_the_api_function() {
    // GIVEN the API function's HttpApi routes (no Path and Method: the `$default` route)
    let events = resource("ApiFunction")["Properties"]["Events"]
        .as_mapping()
        .expect("Events");
    let routes: Vec<(Option<&str>, Option<&str>)> = events
        .values()
        .map(|e| {
            assert_eq!(e["Type"].as_str(), Some("HttpApi"), "{e:?}");
            let (tag, api) = tag_of(&e["Properties"]["ApiId"]).expect("ApiId: !Ref HttpApi");
            assert_eq!((tag.as_str(), api.as_str()), ("!Ref", Some("HttpApi")));
            (
                e["Properties"]["Method"].as_str(),
                e["Properties"]["Path"].as_str(),
            )
        })
        .collect();
    // THEN every request of the OpenAPI document, the health check and the dashboard is routed
    // to the function
    for (method, path) in served_requests().await {
        let routed = routes.iter().any(|(m, p)| match (m, p) {
            (None, None) => true, // $default
            (m, Some(p)) => {
                m.is_none_or(|m| m.eq_ignore_ascii_case("ANY") || m.eq_ignore_ascii_case(&method))
                    && route_path_matches(p, &path)
            }
            (Some(_), None) => false,
        });
        assert!(
            routed,
            "no route of template.yaml sends {method} {path} to ApiFunction"
        );
    }
}

#[test]
fn the_http_api_has_a_stage_and_throttles_every_route_by_parameters() {
    let api = &resource("HttpApi")["Properties"];
    // The $default stage: no stage name in paths, as in the local mode.
    assert_eq!(api["StageName"].as_str(), Some("$default"));
    for (setting, parameter) in [
        ("ThrottlingBurstLimit", "ApiThrottlingBurstLimit"),
        ("ThrottlingRateLimit", "ApiThrottlingRateLimit"),
    ] {
        let (tag, value) = tag_of(&api["DefaultRouteSettings"][setting]).expect(setting);
        assert_eq!((tag.as_str(), value.as_str()), ("!Ref", Some(parameter)));
        assert!(template()["Parameters"][parameter]["Default"].as_u64() > Some(0));
    }
}

/// A function's inline policy statements as (action, resource) pairs, the resource named by
/// its logical id (`X` for `!GetAtt X.Arn`, `X/index/*` for `!Sub "${X.Arn}/index/*"`).
fn granted(function: &str) -> std::collections::BTreeSet<(String, String)> {
    let mut out = std::collections::BTreeSet::new();
    let policies = resource(function)["Properties"]["Policies"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{function}: Policies"));
    for policy in policies {
        // A policy given only under a condition: `!If [cond, {Statement}, !Ref AWS::NoValue]`.
        let policy = match tag_of(policy) {
            Some((tag, v)) if tag == "!If" => &v[1],
            _ => policy,
        };
        let statements = policy["Statement"].as_sequence().unwrap_or_else(|| {
            panic!("{function}: only inline statements, each scoped to a resource: {policy:?}")
        });
        for st in statements {
            assert_eq!(st["Effect"].as_str(), Some("Allow"), "{function}: {st:?}");
            let resource = match tag_of(&st["Resource"]) {
                Some((tag, v)) if tag == "!GetAtt" => {
                    let v = v.as_str().expect("X.Arn");
                    v.strip_suffix(".Arn")
                        .unwrap_or_else(|| panic!("{function}: {v}"))
                        .to_owned()
                }
                Some((tag, v)) if tag == "!Sub" => {
                    let v = v.as_str().expect("a !Sub string");
                    let (table, rest) = v
                        .strip_prefix("${")
                        .and_then(|v| v.split_once(".Arn}"))
                        .unwrap_or_else(|| panic!("{function}: {v}"));
                    assert_eq!(rest, "/index/*", "{function}: {v}");
                    format!("{table}{rest}")
                }
                // A resource given by the deployment (a parameter).
                Some((tag, v)) if tag == "!Ref" => v.as_str().expect("a parameter").to_owned(),
                _ => panic!("{function}: a resource that is not one of ours: {st:?}"),
            };
            let actions: Vec<&str> = match &st["Action"] {
                Value::String(a) => vec![a.as_str()],
                Value::Sequence(a) => a.iter().map(|a| a.as_str().expect("action")).collect(),
                other => panic!("{function}: Action {other:?}"),
            };
            for a in actions {
                assert!(!a.contains('*'), "{function}: wildcard action {a}");
                out.insert((a.to_owned(), resource.clone()));
            }
        }
    }
    out
}

fn pairs(list: &[(&str, &str)]) -> std::collections::BTreeSet<(String, String)> {
    list.iter()
        .map(|(a, r)| ((*a).to_owned(), (*r).to_owned()))
        .collect()
}

#[test]
fn functions_may_do_exactly_what_their_code_does() {
    // GIVEN each function's policy statements
    // THEN the API may do what its routes do: the store's put/get/update/delete, a list page's
    // stats items and its index queries (lists, publish fan-out), the delivery log's history
    // and dead-letter queries, reading and removing a dead letter (redelivery), putting,
    // reading and removing Idempotency-Key records, and enqueueing
    assert_eq!(
        granted("ApiFunction"),
        pairs(&[
            ("dynamodb:GetItem", "WebhooksTable"),
            ("dynamodb:BatchGetItem", "WebhooksTable"),
            ("dynamodb:PutItem", "WebhooksTable"),
            ("dynamodb:UpdateItem", "WebhooksTable"),
            ("dynamodb:DeleteItem", "WebhooksTable"),
            ("dynamodb:Query", "WebhooksTable/index/*"),
            ("dynamodb:GetItem", "DeliveriesTable"),
            ("dynamodb:PutItem", "DeliveriesTable"),
            ("dynamodb:DeleteItem", "DeliveriesTable"),
            ("dynamodb:Query", "DeliveriesTable"),
            ("sqs:SendMessage", "DeliveryQueue"),
            ("kms:GenerateDataKey", "SecretsKey"),
            ("kms:Decrypt", "SecretsKey"),
            ("secretsmanager:GetSecretValue", "JwtSecretId"),
        ])
    );
    // AND the delivery function what the dispatcher does: read and update a webhook (counters,
    // disabling), record attempts, final markers and dead letters and read a delivery's
    // attempts; receive and delete (the event source), retry through the visibility, and send
    // what gives up to the dead-letter queue; and, consuming that queue, read a dead letter and
    // take back one written for a delivery that had ended; and, for operational notifications,
    // put and delete a webhook's notice item and queue a notification
    assert_eq!(
        granted("DeliveryFunction"),
        pairs(&[
            ("dynamodb:GetItem", "WebhooksTable"),
            ("dynamodb:UpdateItem", "WebhooksTable"),
            ("dynamodb:PutItem", "WebhooksTable"),
            ("dynamodb:DeleteItem", "WebhooksTable"),
            ("sqs:SendMessage", "DeliveryQueue"),
            ("dynamodb:PutItem", "DeliveriesTable"),
            ("dynamodb:Query", "DeliveriesTable"),
            ("dynamodb:GetItem", "DeliveriesTable"),
            ("dynamodb:DeleteItem", "DeliveriesTable"),
            ("sqs:ReceiveMessage", "DeliveryQueue"),
            ("sqs:DeleteMessage", "DeliveryQueue"),
            ("sqs:GetQueueAttributes", "DeliveryQueue"),
            ("sqs:ChangeMessageVisibility", "DeliveryQueue"),
            ("sqs:SendMessage", "DeadLetterQueue"),
            ("sqs:ReceiveMessage", "DeadLetterQueue"),
            ("sqs:DeleteMessage", "DeadLetterQueue"),
            ("sqs:GetQueueAttributes", "DeadLetterQueue"),
            ("sqs:SendMessage", "SlowQueue"),
            ("sqs:ReceiveMessage", "SlowQueue"),
            ("sqs:DeleteMessage", "SlowQueue"),
            ("sqs:GetQueueAttributes", "SlowQueue"),
            ("sqs:ChangeMessageVisibility", "SlowQueue"),
            ("kms:GenerateDataKey", "SecretsKey"),
            ("kms:Decrypt", "SecretsKey"),
            // operators' alerts, only when OperatorTopicArn is given (a policy under
            // HasOperatorTopic)
            ("sns:Publish", "OperatorTopicArn"),
        ])
    );
    // AND KMS only for the secrets' data keys: every KMS statement is bound to the encryption
    // context the key ring uses, so the functions cannot decrypt anything else under that key
    for function in ["ApiFunction", "DeliveryFunction"] {
        let statements = resource(function)["Properties"]["Policies"][0]["Statement"]
            .as_sequence()
            .expect("statements");
        let kms: Vec<_> = statements
            .iter()
            .filter(|st| format!("{:?}", st["Action"]).contains("kms:"))
            .collect();
        assert!(!kms.is_empty(), "{function}");
        let (name, value) = webhooks_aws::kms::ENCRYPTION_CONTEXT;
        for st in kms {
            assert_eq!(
                st["Condition"]["StringEquals"][format!("kms:EncryptionContext:{name}").as_str()]
                    .as_str(),
                Some(value),
                "{function}: {st:?}"
            );
        }
    }
    // AND no SAM event adds a policy of its own: an `Events: SQS` entry would attach
    // AWSLambdaSQSQueueExecutionRole, which reaches every queue of the account
    assert!(resource("DeliveryFunction")["Properties"]["Events"].is_null());
    delivery_event_source();
}

#[test]
fn the_tables_declare_exactly_the_indexes_and_key_attributes_the_code_uses() {
    use std::collections::BTreeSet;
    use webhooks_aws::dynamodb::delivery_log::key;
    for (table, indexes) in [
        ("WebhooksTable", vec![BY_OWNER_INDEX, BY_BUCKET_INDEX]),
        ("DeliveriesTable", vec![]),
    ] {
        // GIVEN a table of the template
        let props: TableProperties = properties(table);
        // THEN it has no index the code does not query (each one costs a copy of every write)
        let declared: BTreeSet<&str> = props
            .global_secondary_indexes
            .iter()
            .map(|g| g.index_name.as_str())
            .collect();
        assert_eq!(declared, indexes.into_iter().collect(), "{table}");
        // AND its attribute definitions are exactly its key attributes, all strings
        let keys: BTreeSet<&str> = props
            .key_schema
            .iter()
            .chain(
                props
                    .global_secondary_indexes
                    .iter()
                    .flat_map(|g| &g.key_schema),
            )
            .map(|k| k.attribute_name.as_str())
            .collect();
        let defined: BTreeSet<&str> = props
            .attribute_definitions
            .iter()
            .map(|a| {
                assert_eq!(a.attribute_type, "S", "{table}.{}", a.attribute_name);
                a.attribute_name.as_str()
            })
            .collect();
        assert_eq!(defined, keys, "{table}");
    }
    // (The deliveries table's TTL attribute is the one the log writes: see the test above and
    // the_items_the_adapters_write_have_the_declared_key_types_and_a_numeric_ttl.)
    assert_eq!(key::EXPIRES_AT, "expiresAt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_items_the_adapters_write_have_the_declared_key_types_and_a_numeric_ttl() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use webhooks_aws::dynamodb::delivery_log::key;
    use webhooks_core::conformance::sample_webhook;
    use webhooks_core::delivery::{AttemptRecord, AttemptStatus, DeadLetter, DeliveryTask};
    use webhooks_core::ports::{Clock, DeliveryLog, SubscriptionStore};
    use webhooks_core::time::SystemClock;
    use webhooks_core::webhook::DeliveryStatus;
    use webhooks_core::{BucketId, DeliveryId, EventType, OwnerId};

    use crate::helpers::dynamo::DeliveryTables;

    // GIVEN tables built from the template, and one of each item the adapters write: a
    // webhook and its stats item, an attempt, a final marker (with the counter update) and a
    // dead letter
    let tables = DeliveryTables::create().await;
    let now = SystemClock.now();
    let owner = OwnerId::parse("user-template-test").unwrap();
    let w = sample_webhook(&owner, &BucketId::generate(now.unix()), now.unix());
    tables.webhooks.store.create(&w).await.expect("create");
    let delivery_id = DeliveryId::generate(now.unix());
    let task = DeliveryTask {
        delivery_id: delivery_id.clone(),
        webhook_id: w.id.clone(),
        event: EventType::AlertTriggered,
        generation: 0,
        attempts_made: 0,
        body: "{}".into(),
        created_at: now,
    };
    tables
        .log
        .record_attempt(&AttemptRecord {
            webhook_id: w.id.clone(),
            delivery_id: delivery_id.clone(),
            generation: 0,
            attempt: 1,
            event: EventType::AlertTriggered,
            status: AttemptStatus::Failed,
            status_code: Some(500),
            duration_ms: 1,
            error: Some("receiver answered HTTP 500".into()),
            response_body: None,
            at: now,
        })
        .await
        .expect("attempt");
    assert!(
        tables
            .log
            .finish(&w.id, &delivery_id, 0, DeliveryStatus::Failed, now)
            .await
            .expect("finish")
    );
    tables
        .log
        .put_dead_letter(&DeadLetter {
            task,
            error: "receiver answered HTTP 500".into(),
            attempts: 1,
            at: now,
        })
        .await
        .expect("dead letter");

    // WHEN both tables are read back raw
    for (logical_id, table_name, want_items) in [
        // The webhook and its stats item.
        ("WebhooksTable", tables.webhooks.name.as_str(), 2),
        // The attempt, the final marker, the dead letter and the hour's aggregate.
        ("DeliveriesTable", tables.deliveries_name.as_str(), 4),
    ] {
        let items = tables
            .webhooks
            .client
            .scan()
            .table_name(table_name)
            .send()
            .await
            .expect("scan")
            .items
            .unwrap_or_default();
        assert_eq!(items.len(), want_items, "{logical_id}: {items:?}");
        let props: TableProperties = properties(logical_id);
        for item in &items {
            // THEN every item has the table's keys, and each declared attribute it carries has
            // the declared type (an index key of another type would be rejected by DynamoDB)
            for k in &props.key_schema {
                assert!(
                    item.contains_key(&k.attribute_name),
                    "{logical_id}: {item:?}"
                );
            }
            for def in &props.attribute_definitions {
                if let Some(v) = item.get(&def.attribute_name) {
                    assert!(
                        matches!(
                            (def.attribute_type.as_str(), v),
                            ("S", AttributeValue::S(_))
                                | ("N", AttributeValue::N(_))
                                | ("B", AttributeValue::B(_))
                        ),
                        "{logical_id}.{}: {v:?}",
                        def.attribute_name
                    );
                }
            }
            // AND the TTL attribute, where written, is epoch seconds about 30 days ahead (a
            // string or milliseconds would never expire; an hourly aggregate 48-49 h ahead),
            // and a dead letter has none
            if let Some(ttl) = props.time_to_live_specification.as_ref() {
                assert_eq!(ttl.attribute_name, key::EXPIRES_AT);
                let sk = match item.get(key::SK) {
                    Some(AttributeValue::S(sk)) => sk.clone(),
                    other => panic!("sk {other:?}"),
                };
                match item.get(&ttl.attribute_name) {
                    Some(AttributeValue::N(n)) => {
                        let at: i64 = n.parse().expect("whole seconds");
                        let ahead = at - now.unix();
                        let want = if sk.starts_with("H#") {
                            48 * 3600..=49 * 3600
                        } else {
                            29 * 86_400..=31 * 86_400
                        };
                        assert!(want.contains(&ahead), "{sk}: expires {ahead} s ahead");
                        assert!(!sk.starts_with("D#"), "a dead letter must not expire");
                    }
                    None => assert!(sk.starts_with("D#"), "{sk}: no TTL"),
                    Some(other) => panic!("{sk}: TTL attribute {other:?} is not a number"),
                }
            }
        }
    }
}

#[test]
fn every_alarm_notifies_the_alarm_topic_and_the_dashboard_and_ratio_read_the_emitted_metrics() {
    use webhooks_core::metrics::{DeliveryOutcome, Distribution, NAMESPACE};
    // GIVEN the template's alarms
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let alarms: Vec<(String, &Value)> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .map(|(k, r)| (k.as_str().unwrap().to_owned(), r))
        .collect();
    // THEN the alarms are all there…
    for name in [
        "DeadLetterQueueAlarm",
        "DeliveryQueueAgeAlarm",
        "SlowQueueAgeAlarm",
        "FunctionErrorsAlarm",
        "FunctionThrottlesAlarm",
        "SuccessRatioAlarm",
    ] {
        assert!(alarms.iter().any(|(k, _)| k == name), "no alarm {name}");
    }
    // …and each notifies the AlarmTopicArn parameter when it is set
    for (name, alarm) in &alarms {
        let actions = serde_yaml::to_string(&alarm["Properties"]["AlarmActions"]).unwrap();
        assert!(
            actions.contains("HasAlarmTopic") && actions.contains("AlarmTopicArn"),
            "{name} has no target: {actions}"
        );
    }
    // AND the queue-age alarms watch each lane's oldest message, against a parameter of each
    for (alarm, queue, threshold) in [
        (
            "DeliveryQueueAgeAlarm",
            "DeliveryQueue",
            "QueueAgeAlarmSeconds",
        ),
        ("SlowQueueAgeAlarm", "SlowQueue", "SlowQueueAgeAlarmSeconds"),
    ] {
        let age = &resource(alarm)["Properties"];
        assert_eq!(
            age["MetricName"].as_str(),
            Some("ApproximateAgeOfOldestMessage"),
            "{alarm}"
        );
        assert_eq!(
            serde_yaml::to_string(&age["Dimensions"]).unwrap(),
            format!("- Name: QueueName\n  Value: !GetAtt {queue}.QueueName\n"),
            "{alarm}"
        );
        assert_eq!(
            serde_yaml::to_string(&age["Threshold"]).unwrap(),
            format!("!Ref {threshold}\n"),
            "{alarm}"
        );
        assert!(
            t["Parameters"][threshold]["Default"]
                .as_u64()
                .is_some_and(|s| s >= 60)
        );
    }
    // AND errors and throttles cover both functions
    for (alarm, metric) in [
        ("FunctionErrorsAlarm", "Errors"),
        ("FunctionThrottlesAlarm", "Throttles"),
    ] {
        let text = serde_yaml::to_string(&resource(alarm)["Properties"]["Metrics"]).unwrap();
        for f in ["ApiFunction", "DeliveryFunction"] {
            assert!(text.contains(f) && text.contains(metric), "{alarm}: {f}");
        }
    }
    // AND the success ratio is metric math on the delivery function's EMF metrics, by the core's
    // names
    let ratio = serde_yaml::to_string(&resource("SuccessRatioAlarm")["Properties"]).unwrap();
    for o in [
        DeliveryOutcome::Delivered,
        DeliveryOutcome::Retried,
        DeliveryOutcome::DeadLettered,
    ] {
        assert!(
            ratio.contains(&format!("MetricName: {}", o.metric())),
            "{}",
            o.metric()
        );
    }
    assert!(ratio.contains(&format!("Namespace: {NAMESPACE}")));
    assert!(ratio.contains("Expression: 100 * delivered / (delivered + retried + dead)"));
    // AND the dashboard is valid JSON (placeholders aside) drawing every outcome, the latency
    // and lag percentiles, the queue's age, the dead letters, errors and throttles
    let body = match &resource("OperationsDashboard")["Properties"]["DashboardBody"] {
        Value::Tagged(t) => t.value.as_str().unwrap().to_owned(),
        other => panic!("DashboardBody is not a !Sub: {other:?}"),
    };
    let json: serde_json::Value = serde_json::from_str(&body).expect("the dashboard body is JSON");
    let widgets = json["widgets"].as_array().unwrap();
    assert_eq!(widgets.len(), 7);
    for o in DeliveryOutcome::ALL {
        assert!(
            body.contains(&format!("\"{}\"", o.metric())),
            "{}",
            o.metric()
        );
    }
    for d in [Distribution::AttemptLatency, Distribution::DeliveryLag] {
        assert!(body.contains(&format!("\"{NAMESPACE}\", \"{}\"", d.metric())));
    }
    for needle in [
        "\"p50\"",
        "\"p95\"",
        "ApproximateAgeOfOldestMessage",
        "${DeadLetterQueue.QueueName}",
        "${SlowQueue.QueueName}",
        "\"Errors\"",
        "\"Throttles\"",
    ] {
        assert!(body.contains(needle), "dashboard lacks {needle}");
    }
}
