//! Expressions built by hand: the one `UpdateItem` a [`WebhookPatch`] becomes, and the atomic
//! counter update of an outcome. Every attribute name goes through a `#placeholder`, so no name
//! ever collides with a DynamoDB reserved word.
//!
//! Values are encoded exactly as [`WebhookItem`](super::item::WebhookItem) encodes them (strings,
//! a list of strings, numbers, a boolean), so a patched item decodes like a created one.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use webhooks_core::Timestamp;
use webhooks_core::webhook::{DeliveryStatus, WebhookPatch};

use super::item::attr;

/// An update expression with its placeholder maps.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Expr {
    pub expression: String,
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
}

impl Expr {
    pub(crate) fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    pub(crate) fn value(&mut self, key: &str, v: AttributeValue) -> String {
        let placeholder = format!(":{key}");
        self.values.insert(placeholder.clone(), v);
        placeholder
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The condition every owner-scoped write carries: the item exists and is `owner`'s. Adds its
/// placeholders to `e` and returns the condition text.
pub(crate) fn owned_by(e: &mut Expr, owner: &str) -> String {
    let (id, owner_name) = (e.name(attr::ID), e.name(attr::OWNER_ID));
    let owner_value = e.value("owner", s(owner));
    format!("attribute_exists({id}) AND {owner_name} = {owner_value}")
}

/// The sealed forms of a patch's credentials ([`webhooks_core::sealing`]): the store seals them
/// before building the expression, which takes them from here and never from the patch, so no
/// request carries a secret or a header value in clear.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct SealedPatch {
    /// The new secret, sealed (when the patch sets one).
    pub secret: Option<String>,
    /// The rotated-out secret, sealed (when the patch sets one).
    pub previous_secret: Option<String>,
    /// The new headers' JSON, sealed (when the patch sets a non-empty set).
    pub headers: Option<String>,
}

/// `patch` as one update expression: `SET` for every present field (and `updatedAt`), `REMOVE
/// description` for a cleared description. Retry settings are set inside the `retryConfig` map,
/// so a patch of one of them keeps the others. Credentials come sealed, from `sealed`.
pub(crate) fn patch_update(patch: &WebhookPatch, sealed: &SealedPatch, now: Timestamp) -> Expr {
    let mut e = Expr::default();
    let mut set = Vec::new();
    let mut remove = Vec::new();

    if let Some(url) = &patch.url {
        set.push(format!(
            "{} = {}",
            e.name(attr::URL),
            e.value("url", s(url))
        ));
    }
    if let Some(events) = &patch.events {
        let list = AttributeValue::L(events.iter().map(|ev| s(ev.as_str())).collect());
        set.push(format!(
            "{} = {}",
            e.name(attr::EVENTS),
            e.value("events", list)
        ));
    }
    match &patch.description {
        None => {}
        Some(Some(d)) => {
            set.push(format!(
                "{} = {}",
                e.name(attr::DESCRIPTION),
                e.value("description", s(d))
            ));
        }
        Some(None) => remove.push(e.name(attr::DESCRIPTION)),
    }
    if let Some(active) = patch.active {
        let v = e.value("active", AttributeValue::Bool(active));
        set.push(format!("{} = {v}", e.name(attr::ACTIVE)));
    }
    let retry: [(&str, Option<AttributeValue>); 3] = [
        (attr::MAX_RETRIES, patch.max_retries.map(n)),
        (attr::BACKOFF_MULTIPLIER, patch.backoff_multiplier.map(n)),
        (
            attr::INITIAL_DELAY_SECONDS,
            patch.initial_delay_seconds.map(n),
        ),
    ];
    for (field, value) in retry {
        if let Some(value) = value {
            let path = format!("{}.{}", e.name(attr::RETRY_CONFIG), e.name(field));
            set.push(format!("{path} = {}", e.value(field, value)));
        }
    }
    if let (Some(_), Some(secret)) = (&patch.secret, &sealed.secret) {
        set.push(format!(
            "{} = {}",
            e.name(attr::SECRET),
            e.value("secret", s(secret))
        ));
    }
    if let Some(format) = patch.format {
        set.push(format!(
            "{} = {}",
            e.name(attr::FORMAT),
            e.value("format", s(format.as_str()))
        ));
    }
    match patch.rate_limit {
        None => {}
        Some(Some(r)) => {
            set.push(format!(
                "{} = {}",
                e.name(attr::RATE_LIMIT),
                e.value("rateLimit", n(r))
            ));
        }
        Some(None) => remove.push(e.name(attr::RATE_LIMIT)),
    }
    match &patch.filter {
        None => {}
        Some(Some(f)) => {
            set.push(format!(
                "{} = {}",
                e.name(attr::FILTER),
                e.value("filter", s(f.to_json()))
            ));
        }
        Some(None) => remove.push(e.name(attr::FILTER)),
    }
    match &patch.headers {
        None => {}
        Some(h) if h.is_empty() => remove.push(e.name(attr::HEADERS)),
        Some(_) => {
            if let Some(h) = &sealed.headers {
                set.push(format!(
                    "{} = {}",
                    e.name(attr::HEADERS),
                    e.value("headers", s(h))
                ));
            }
        }
    }
    match &patch.previous_secret {
        None => {}
        Some(Some(p)) => {
            if let Some(previous) = &sealed.previous_secret {
                set.push(format!(
                    "{} = {}",
                    e.name(attr::PREVIOUS_SECRET),
                    e.value("previousSecret", s(previous))
                ));
            }
            set.push(format!(
                "{} = {}",
                e.name(attr::PREVIOUS_SECRET_EXPIRES_AT),
                e.value("previousSecretExpiresAt", s(p.expires_at.to_rfc3339()))
            ));
        }
        Some(None) => {
            remove.push(e.name(attr::PREVIOUS_SECRET));
            remove.push(e.name(attr::PREVIOUS_SECRET_EXPIRES_AT));
        }
    }
    match &patch.disabled_reason {
        None => {}
        Some(Some(r)) => set.push(format!(
            "{} = {}",
            e.name(attr::DISABLED_REASON),
            e.value("disabledReason", s(r))
        )),
        Some(None) => remove.push(e.name(attr::DISABLED_REASON)),
    }
    let updated = e.value("updatedAt", s(now.to_rfc3339()));
    set.push(format!("{} = {updated}", e.name(attr::UPDATED_AT)));

    e.expression = format!("SET {}", set.join(", "));
    if !remove.is_empty() {
        e.expression
            .push_str(&format!(" REMOVE {}", remove.join(", ")));
    }
    e
}

/// The atomic counter update of final outcomes of one webhook: `ADD totalDeliveries :total,
/// successfulDeliveries :succeeded, failedDeliveries :failed SET lastDeliveryAt = :at,
/// lastDeliveryStatus = :status` (the latest outcome of `outcomes`) and `failingSince` kept as
/// the outcomes in time order leave it (a success ends a run of failures, a failure starts one
/// unless it is running), conditional on the item existing. Returns the expression and the
/// condition. `outcomes` is not empty.
/// Which part of an outcome's update to make ([`outcomes_update`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutcomePart {
    /// The counters and the latest-outcome fields, if these outcomes are not older than the one
    /// recorded (the condition says so).
    CountAndLatest,
    /// The counters (and `failingSince`) only: a newer outcome is recorded already (outcomes
    /// may commit out of order), and `lastDelivery*` stay the newest one's.
    CountOnly,
}

/// [`outcomes_update`] of one outcome.
pub(crate) fn outcome_update(
    status: DeliveryStatus,
    at: Timestamp,
    part: OutcomePart,
) -> (Expr, String) {
    outcomes_update(&[(status, at)], part)
}

/// For [`OutcomePart::CountAndLatest`] the condition also asks that `lastDeliveryAt` be absent
/// or not later than the latest of `outcomes` (RFC 3339 UTC strings of one width sort as their
/// times), so `lastDelivery*` never moves backwards; when it fails, the caller makes the
/// [`OutcomePart::CountOnly`] update instead.
pub(crate) fn outcomes_update(
    outcomes: &[(DeliveryStatus, Timestamp)],
    part: OutcomePart,
) -> (Expr, String) {
    let mut e = Expr::default();
    let mut ordered = outcomes.to_vec();
    ordered.sort_by_key(|(_, at)| *at);
    let (last_status, last_at) = *ordered.last().expect("at least one outcome");
    let succeeded = ordered
        .iter()
        .filter(|(st, _)| *st == DeliveryStatus::Success)
        .count();
    let failed = ordered.len() - succeeded;
    // The failures after the group's last success: their first one starts (or continues) a run.
    let run_start = ordered
        .iter()
        .rev()
        .take_while(|(st, _)| *st == DeliveryStatus::Failed)
        .last()
        .map(|(_, at)| *at);

    let mut adds = vec![format!(
        "{} {}",
        e.name(attr::TOTAL_DELIVERIES),
        e.value("total", n(ordered.len() as u32))
    )];
    if succeeded > 0 {
        adds.push(format!(
            "{} {}",
            e.name(attr::SUCCESSFUL_DELIVERIES),
            e.value("succeeded", n(succeeded as u32))
        ));
    }
    if failed > 0 {
        adds.push(format!(
            "{} {}",
            e.name(attr::FAILED_DELIVERIES),
            e.value("failed", n(failed as u32))
        ));
    }
    let exists = format!("attribute_exists({})", e.name(attr::ID));
    let failing = e.name(attr::FAILING_SINCE);
    // `failingSince` as the port's contract keeps it: a success ends the run of failures; a
    // failure starts one unless it is running.
    let (set_failing, remove_failing) = match run_start {
        None => (None, format!(" REMOVE {failing}")),
        Some(start) => {
            let start = e.value("runStart", s(start.to_rfc3339()));
            (
                Some(format!("{failing} = if_not_exists({failing}, {start})")),
                String::new(),
            )
        }
    };
    if part == OutcomePart::CountOnly {
        let set = set_failing.map(|f| format!(" SET {f}")).unwrap_or_default();
        e.expression = format!("ADD {}{set}{remove_failing}", adds.join(", "));
        return (e, exists);
    }
    let (last_at_name, last_status_name) = (
        e.name(attr::LAST_DELIVERY_AT),
        e.name(attr::LAST_DELIVERY_STATUS),
    );
    let at = e.value("at", s(last_at.to_rfc3339()));
    let status = e.value("status", s(last_status.as_str()));
    let set_failing = set_failing.map(|f| format!(", {f}")).unwrap_or_default();
    e.expression = format!(
        "ADD {} SET {last_at_name} = {at}, {last_status_name} = {status}{set_failing}{remove_failing}",
        adds.join(", ")
    );
    let condition =
        format!("{exists} AND (attribute_not_exists({last_at_name}) OR {last_at_name} <= {at})");
    (e, condition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use webhooks_core::EventType;
    use webhooks_core::webhook::Secret;

    #[test]
    fn a_patch_sets_only_its_present_fields_and_always_updated_at() {
        // GIVEN a patch of the active flag only
        let patch = WebhookPatch {
            active: Some(false),
            ..Default::default()
        };
        // WHEN turned into an update
        let e = patch_update(&patch, &SealedPatch::default(), Timestamp::from_unix(0));
        // THEN it sets `active` and `updatedAt`, and nothing else
        assert_eq!(
            e.expression,
            "SET #active = :active, #updatedAt = :updatedAt"
        );
        assert_eq!(e.values.get(":active"), Some(&AttributeValue::Bool(false)));
        assert_eq!(e.values.get(":updatedAt"), Some(&s("1970-01-01T00:00:00Z")));
        assert_eq!(e.names.len(), 2);
    }

    #[test]
    fn a_full_patch_sets_nested_retry_fields_and_removes_a_cleared_description() {
        // GIVEN a patch of every field that clears the description
        let patch = WebhookPatch {
            url: Some("https://example.com/h".into()),
            events: Some(vec![EventType::AlertTriggered, EventType::BucketUpdated]),
            description: Some(None),
            active: Some(true),
            max_retries: Some(4),
            backoff_multiplier: Some(1.5),
            initial_delay_seconds: Some(30),
            secret: Some(Secret::new("rotated".into())),
            ..Default::default()
        };
        // WHEN turned into an update, its secret sealed
        let sealed = SealedPatch {
            secret: Some("sealed:v1:k:AAAA".into()),
            ..Default::default()
        };
        let e = patch_update(&patch, &sealed, Timestamp::from_unix(0));
        // THEN the secret goes in sealed, never in clear
        assert_eq!(e.values.get(":secret"), Some(&s("sealed:v1:k:AAAA")));
        assert!(!format!("{:?}", e.values).contains("rotated"));
        // AND the retry settings are paths inside `retryConfig`, and the description is removed
        assert!(
            e.expression
                .contains("#retryConfig.#maxRetries = :maxRetries"),
            "{}",
            e.expression
        );
        assert!(
            e.expression
                .contains("#retryConfig.#backoffMultiplier = :backoffMultiplier")
        );
        assert!(
            e.expression.ends_with(" REMOVE #description"),
            "{}",
            e.expression
        );
        assert!(!e.values.contains_key(":description"));
        assert_eq!(e.values.get(":backoffMultiplier"), Some(&n("1.5")));
        assert_eq!(
            e.values.get(":events"),
            Some(&AttributeValue::L(vec![
                s("alert.triggered"),
                s("bucket.updated")
            ]))
        );
        // every placeholder used is defined
        for name in e.names.keys() {
            assert!(e.expression.contains(name.as_str()));
        }
    }

    #[test]
    fn an_outcome_adds_to_the_total_and_one_counter() {
        let (e, cond) = outcome_update(
            DeliveryStatus::Failed,
            Timestamp::from_unix(0),
            OutcomePart::CountAndLatest,
        );
        assert_eq!(
            e.expression,
            "ADD #totalDeliveries :total, #failedDeliveries :failed \
             SET #lastDeliveryAt = :at, #lastDeliveryStatus = :status, \
             #failingSince = if_not_exists(#failingSince, :runStart)"
        );
        assert_eq!(
            cond,
            "attribute_exists(#id) AND (attribute_not_exists(#lastDeliveryAt) OR #lastDeliveryAt <= :at)"
        );
        assert_eq!(e.values.get(":status"), Some(&s("failed")));
        assert_eq!(e.values.get(":total"), Some(&n(1)));
        // AND the count-only part leaves the latest outcome alone and only needs the item
        let (e, cond) = outcome_update(
            DeliveryStatus::Success,
            Timestamp::from_unix(0),
            OutcomePart::CountOnly,
        );
        assert_eq!(
            e.expression,
            "ADD #totalDeliveries :total, #successfulDeliveries :succeeded REMOVE #failingSince"
        );
        assert_eq!(cond, "attribute_exists(#id)");
        for name in e.names.keys() {
            assert!(e.expression.contains(name.as_str()) || cond.contains(name.as_str()));
        }
    }

    #[test]
    fn a_group_of_outcomes_adds_each_counter_once_and_keeps_the_latest_and_the_run() {
        let t = Timestamp::from_unix;
        use DeliveryStatus::{Failed, Success};
        // GIVEN outcomes out of time order: a failure, a later success, two later failures
        let (e, _) = outcomes_update(
            &[
                (Failed, t(30)),
                (Success, t(20)),
                (Failed, t(10)),
                (Failed, t(40)),
            ],
            OutcomePart::CountAndLatest,
        );
        // THEN one ADD per counter, the latest outcome (a failure at 40) is the last delivery,
        // and a run of failures starts at 30 (the first failure after the last success)
        assert_eq!(
            e.expression,
            "ADD #totalDeliveries :total, #successfulDeliveries :succeeded, #failedDeliveries :failed \
             SET #lastDeliveryAt = :at, #lastDeliveryStatus = :status, \
             #failingSince = if_not_exists(#failingSince, :runStart)"
        );
        assert_eq!(e.values.get(":total"), Some(&n(4)));
        assert_eq!(e.values.get(":succeeded"), Some(&n(1)));
        assert_eq!(e.values.get(":failed"), Some(&n(3)));
        assert_eq!(e.values.get(":at"), Some(&s(t(40).to_rfc3339())));
        assert_eq!(e.values.get(":runStart"), Some(&s(t(30).to_rfc3339())));
        // AND a group ending in a success ends the run
        let (e, _) = outcomes_update(
            &[(Failed, t(1)), (Success, t(2))],
            OutcomePart::CountAndLatest,
        );
        assert!(
            e.expression.ends_with(" REMOVE #failingSince"),
            "{}",
            e.expression
        );
        assert_eq!(e.values.get(":status"), Some(&s("success")));
    }
}
