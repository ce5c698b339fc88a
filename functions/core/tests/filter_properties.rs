//! Property tests (proptest) of payload filters ([`webhooks_core::filter`]):
//!
//! - parsing never panics on arbitrary JSON (it accepts or answers `invalid_filter`), and
//!   evaluating any accepted filter on arbitrary documents never panics;
//! - `{"$not": f}` matches exactly the documents `f` does not, for generated valid filters `f`
//!   (every operator, nesting up to the depth limit) on generated envelopes;
//! - `$ne` is the complement of `$eq` and `$nin` of `$in`, missing paths included;
//! - an accepted filter round-trips through its stored text and keeps its verdicts.
//!
//! Generation is deterministic (a fixed seed, overridable with `PROPTEST_RNG_SEED`), and nothing
//! is written to disk on failure.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::{Map, Value, json};
use webhooks_core::filter::{Filter, MAX_DEPTH};

const SEED: u64 = 0x6669_6c74_6572_0013;
const CASES: u32 = 2_000;

fn config() -> Config {
    let default = Config::default();
    Config {
        cases: CASES,
        rng_seed: match default.rng_seed {
            RngSeed::Random => RngSeed::Fixed(SEED),
            fixed => fixed,
        },
        failure_persistence: None,
        ..default
    }
}

/// A scalar from a small pool, so generated filters and documents often meet: equal numbers
/// written differently (`30`, `30.0`), strings that are prefixes of each other, unicode, and
/// values of every type.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..40).prop_map(|n| json!(n)),
        prop_oneof![Just(30.0), Just(-0.0), Just(31.5), Just(1e300), Just(0.1)]
            .prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "",
            "pump",
            "pump-1",
            "pump-10",
            "Pump-1",
            "é",
            "\u{1F600}",
            "\u{FF5E}",
            "30"
        ])
        .prop_map(|s| json!(s)),
    ]
}

/// Any JSON value, nested a little.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "0", "1", "severity", "$x"]).prop_map(str::to_owned)
}

/// A path into the envelope, existing or not.
fn path() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "event",
        "timestamp",
        "bucketId",
        "data",
        "data.a",
        "data.b",
        "data.a.b",
        "data.a.0",
        "data.b.1",
        "data.a.a.a",
        "data.severity",
        "data.missing",
        "deliveryId",
    ])
    .prop_map(str::to_owned)
}

/// An envelope whose `data` is generated.
fn envelope() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((key(), value()), 0..5),
        prop::sample::select(vec!["data.received", "alert.triggered"]),
    )
        .prop_map(|(data, event)| {
            json!({
                "event": event,
                "timestamp": "2024-01-15T10:30:00Z",
                "webhookId": "507f1f77bcf86cd799439011",
                "bucketId": "507f1f77bcf86cd799439022",
                "deliveryId": "507f1f77bcf86cd799439033",
                "data": Value::Object(data.into_iter().collect()),
            })
        })
}

/// One operator with a valid operand.
fn operator() -> impl Strategy<Value = (String, Value)> {
    let ordered = prop_oneof![
        (-3i64..40).prop_map(|n| json!(n)),
        Just(json!(30.0)),
        Just(json!("pump-1")),
        Just(json!("\u{FF5E}"))
    ];
    let contains = prop_oneof![
        Just(json!("pump")),
        Just(json!(1)),
        Just(json!(null)),
        Just(json!(true))
    ];
    prop_oneof![
        value().prop_map(|v| ("$eq".to_owned(), v)),
        value().prop_map(|v| ("$ne".to_owned(), v)),
        (
            prop::sample::select(vec!["$gt", "$gte", "$lt", "$lte"]),
            ordered
        )
            .prop_map(|(o, v)| (o.to_owned(), v)),
        (
            prop::sample::select(vec!["$in", "$nin"]),
            prop::collection::vec(scalar(), 0..4)
        )
            .prop_map(|(o, v)| (o.to_owned(), Value::Array(v))),
        any::<bool>().prop_map(|b| ("$exists".to_owned(), json!(b))),
        contains.prop_map(|v| ("$contains".to_owned(), v)),
        prop::sample::select(vec!["", "p", "pump-", "é"])
            .prop_map(|s| ("$startsWith".to_owned(), json!(s))),
    ]
}

/// A valid filter at most `depth` levels deep.
fn filter(depth: u32) -> BoxedStrategy<Value> {
    let condition = (
        path(),
        prop::collection::vec(operator(), 1..3),
        any::<bool>(),
    )
        .prop_map(|(p, ops, plain)| {
            // A plain value (implicit $eq) unless it is an object, which needs $eq spelled out.
            let v = match (&ops[0], plain) {
                ((op, v), true) if op == "$eq" && !v.is_object() => v.clone(),
                _ => Value::Object(ops.into_iter().collect()),
            };
            json!({ p: v })
        });
    if depth <= 1 {
        return condition.boxed();
    }
    let inner = filter(depth - 1);
    prop_oneof![
        3 => condition,
        1 => (prop::sample::select(vec!["$and", "$or"]), prop::collection::vec(inner.clone(), 1..3))
            .prop_map(|(op, fs)| json!({ op: fs })),
        1 => inner.clone().prop_map(|f| json!({"$not": f})),
        1 => (inner.clone(), inner).prop_map(|(a, b)| {
            // Two filters' keys in one object (an implicit $and); a repeated key keeps one.
            let mut m = a.as_object().cloned().unwrap_or_default();
            m.extend(b.as_object().cloned().unwrap_or_default());
            Value::Object(m)
        }),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parsing_and_evaluating_anything_never_panics(raw in value(), doc in envelope()) {
        // Arbitrary JSON as a filter (objects keyed by paths, operators and junk).
        if let Ok(f) = Filter::parse(raw.clone()) {
            let _ = f.matches(&doc);
            let _ = f.matches(&raw);
        }
        let keyed = json!({ "data.a": raw.clone(), "$or": [ { "data.b": raw } ] });
        if let Ok(f) = Filter::parse(keyed) {
            let _ = f.matches(&doc);
        }
    }

    #[test]
    fn not_is_the_complement_and_verdicts_survive_a_round_trip(
        f in filter(MAX_DEPTH as u32 - 1),
        docs in prop::collection::vec(envelope(), 1..6),
    ) {
        let parsed = Filter::parse(f.clone());
        prop_assert!(parsed.is_ok(), "{f}: {:?}", parsed.err());
        let parsed = parsed.unwrap();
        let not = Filter::parse(json!({"$not": f})).unwrap();
        let back = Filter::from_json(&parsed.to_json()).unwrap();
        for d in &docs {
            prop_assert_eq!(not.matches(d), !parsed.matches(d), "{}", d);
            prop_assert_eq!(back.matches(d), parsed.matches(d));
        }
    }

    #[test]
    fn ne_and_nin_are_the_complements_of_eq_and_in(
        p in path(),
        v in value(),
        list in prop::collection::vec(scalar(), 0..4),
        doc in envelope(),
    ) {
        let m = |f: Value| Filter::parse(f).unwrap().matches(&doc);
        prop_assert_eq!(m(json!({&p: {"$ne": v.clone()}})), !m(json!({&p: {"$eq": v}})));
        prop_assert_eq!(
            m(json!({&p: {"$nin": list.clone()}})),
            !m(json!({&p: {"$in": list}}))
        );
    }
}
