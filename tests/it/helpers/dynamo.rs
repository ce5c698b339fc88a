//! DynamoDB in moto: SDK configs with dummy credentials pointed at the test process's moto
//! server, and one fresh table per test, created from `template.yaml`'s definition, so what is
//! tested is what is deployed (an attribute or index the code uses but the template lacks fails
//! the tests).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus,
};
use webhooks_aws::{DynamoDbConfig, DynamoDbSubscriptionStore};

use super::template::{self, TableProperties};
use super::{moto, poll_until};

/// An SDK config for `endpoint` with moto's dummy credentials and region. Everything is set on
/// the builder: nothing is read from (or written to) the process environment, which tests on
/// other threads share.
pub fn sdk_config_for(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test",
            "test",
            None,
            None,
            "moto-dummy",
        )))
        .endpoint_url(endpoint)
        .build()
}

/// A DynamoDB client on the process's moto server (started on first use).
pub fn moto_client() -> Client {
    Client::new(&sdk_config_for(moto::endpoint()))
}

fn unique_table_name(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Creates a table named `name` from `Resources.<logical_id>` of `template.yaml` and waits until
/// it and its indexes are ACTIVE.
pub async fn create_table_from_template(client: &Client, logical_id: &str, name: &str) {
    let props: TableProperties = template::properties(logical_id);
    let key_schema = |keys: &[template::KeySchemaElement]| -> Vec<KeySchemaElement> {
        keys.iter()
            .map(|k| {
                KeySchemaElement::builder()
                    .attribute_name(&k.attribute_name)
                    .key_type(KeyType::from(k.key_type.as_str()))
                    .build()
                    .expect("key schema element")
            })
            .collect()
    };
    let billing = props.billing_mode.as_deref().unwrap_or("PROVISIONED");
    assert_eq!(
        billing, "PAY_PER_REQUEST",
        "{logical_id}: the test harness builds on-demand tables only; teach it ProvisionedThroughput"
    );
    let mut req = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(billing))
        .set_key_schema(Some(key_schema(&props.key_schema)));
    for a in &props.attribute_definitions {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()
                .expect("attribute definition"),
        );
    }
    for gsi in &props.global_secondary_indexes {
        let projection = Projection::builder()
            .projection_type(ProjectionType::from(
                gsi.projection.projection_type.as_str(),
            ))
            .set_non_key_attributes(
                (!gsi.projection.non_key_attributes.is_empty())
                    .then(|| gsi.projection.non_key_attributes.clone()),
            )
            .build();
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&gsi.index_name)
                .set_key_schema(Some(key_schema(&gsi.key_schema)))
                .projection(projection)
                .build()
                .expect("global secondary index"),
        );
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("create table {name} from {logical_id}: {e:?}"));

    poll_until(
        &format!("table {name} to become ACTIVE"),
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let t = client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .ok()?
                .table?;
            let indexes_active = t
                .global_secondary_indexes()
                .iter()
                .all(|i| i.index_status() == Some(&IndexStatus::Active));
            (t.table_status() == Some(&TableStatus::Active) && indexes_active).then_some(())
        },
    )
    .await;
}

/// A fresh webhooks table in moto (built from `WebhooksTable`) and a store on it.
#[derive(Debug)]
pub struct WebhooksTable {
    pub client: Client,
    pub name: String,
    pub store: DynamoDbSubscriptionStore,
}

impl WebhooksTable {
    pub async fn create() -> Self {
        let client = moto_client();
        let name = unique_table_name("webhooks");
        create_table_from_template(&client, "WebhooksTable", &name).await;
        // Through the same constructor the Lambda mains use.
        let sdk = sdk_config_for(moto::endpoint());
        let store = DynamoDbSubscriptionStore::from_config(
            &sdk,
            &DynamoDbConfig {
                table_name: name.clone(),
            },
        );
        Self {
            client,
            name,
            store,
        }
    }
}
