//! DynamoDB in moto: SDK configs with dummy credentials pointed at the test process's moto
//! server, and one fresh table per test, created from `template.yaml`'s definition, so what is
//! tested is what is deployed (an attribute or index the code uses but the template lacks fails
//! the tests).

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use webhooks_aws::{
    DeliveryLogConfig, DynamoDbConfig, DynamoDbDeliveryLog, DynamoDbSubscriptionStore,
};

use super::template::{self, TableProperties};
use super::{moto, poll_until, unique_name};

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

/// Creates a table named `name` from `Resources.<logical_id>` of `template.yaml` (keys, indexes,
/// billing, TTL) and waits until it and its indexes are ACTIVE.
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

    // moto records the TTL setting but never expires items, which the tests do not rely on.
    if let Some(ttl) = &props.time_to_live_specification {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(&ttl.attribute_name)
                    .enabled(ttl.enabled)
                    .build()
                    .expect("ttl specification"),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("TTL of {name} from {logical_id}: {e:?}"));
    }
}

/// The KMS key (in the process's moto server) every store of the tests seals secrets under, as
/// `SecretsKey` in `template.yaml` does in production: created on first use, then the same.
pub async fn secrets_key() -> String {
    static KEY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    KEY.get_or_init(|| create_secrets_key(moto::endpoint()))
        .await
        .clone()
}

/// A new KMS key on the emulator at `endpoint`; its ARN.
pub async fn create_secrets_key(endpoint: &str) -> String {
    let kms = aws_sdk_kms::Client::new(&sdk_config_for(endpoint));
    let out = kms
        .create_key()
        .description("dakkio webhooks test secrets key")
        .send()
        .await
        .expect("CreateKey on moto");
    out.key_metadata()
        .and_then(|m| m.arn().map(str::to_owned))
        .expect("key metadata with an ARN")
}

/// [`secrets_key`] once it was created (by any table's creation).
pub fn secrets_key_created() -> String {
    futures_lite_block(secrets_key())
}

/// Runs `f` to completion on a private runtime (for sync callers of an async helper whose work
/// is normally done already).
fn futures_lite_block<F: std::future::Future<Output = String> + Send + 'static>(f: F) -> String {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    })
    .join()
    .expect("secrets key")
}

/// The store config the Lambda mains read, for `table` and the tests' secrets key.
pub async fn store_config(table: &str) -> DynamoDbConfig {
    DynamoDbConfig {
        table_name: table.to_owned(),
        secrets_key_arn: secrets_key().await,
        owner_index: None,
    }
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
        let endpoint = moto::endpoint();
        Self::create_on(endpoint, &sdk_config_for(endpoint), |table| async move {
            store_config(&table).await
        })
        .await
    }

    /// The table on the emulator at `endpoint`, the store on a client of `adapters` (the
    /// service's own SDK settings, or impatient ones for fault tests) with the config `config`
    /// makes of the table's name.
    pub async fn create_on<F, Fut>(endpoint: &str, adapters: &SdkConfig, config: F) -> Self
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = DynamoDbConfig>,
    {
        let client = Client::new(&sdk_config_for(endpoint));
        let name = unique_name("webhooks");
        create_table_from_template(&client, "WebhooksTable", &name).await;
        // Through the same constructor the Lambda mains use.
        let store = DynamoDbSubscriptionStore::from_config(adapters, &config(name.clone()).await);
        Self {
            client,
            name,
            store,
        }
    }
}

/// Both tables of the delivery side in moto (built from `WebhooksTable` and `DeliveriesTable`),
/// the store on the first and the delivery log on both.
#[derive(Debug)]
pub struct DeliveryTables {
    pub webhooks: WebhooksTable,
    pub deliveries_name: String,
    pub log: DynamoDbDeliveryLog,
}

impl DeliveryTables {
    pub async fn create() -> Self {
        let endpoint = moto::endpoint();
        Self::on(WebhooksTable::create().await, &sdk_config_for(endpoint)).await
    }

    /// Both tables on the emulator at `endpoint` (a dedicated one, with a secrets key of its
    /// own), the adapters on clients of `adapters`.
    pub async fn create_on(endpoint: &str, adapters: &SdkConfig) -> Self {
        let key = create_secrets_key(endpoint).await;
        let webhooks = WebhooksTable::create_on(endpoint, adapters, |table| async move {
            DynamoDbConfig {
                table_name: table,
                secrets_key_arn: key,
                owner_index: None,
            }
        })
        .await;
        Self::on(webhooks, adapters).await
    }

    /// The deliveries table beside `webhooks`, and the log on both.
    async fn on(webhooks: WebhooksTable, adapters: &SdkConfig) -> Self {
        let deliveries_name = unique_name("deliveries");
        create_table_from_template(&webhooks.client, "DeliveriesTable", &deliveries_name).await;
        // Through the same constructor and config the Lambda mains use.
        let config = DeliveryLogConfig::from_lookup(|name| match name {
            "WEBHOOKS_TABLE" => Some(webhooks.name.clone()),
            "DELIVERIES_TABLE" => Some(deliveries_name.clone()),
            _ => None,
        })
        .expect("delivery log config");
        let log = DynamoDbDeliveryLog::from_config(adapters, &config);
        Self {
            webhooks,
            deliveries_name,
            log,
        }
    }
}
