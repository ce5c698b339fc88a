//! Payload filters (DESIGN.md §8): which events a webhook wants, beyond their type.
//!
//! A filter is a JSON document matched against the event's envelope
//! (`{"event", "timestamp", "webhookId", "bucketId", "deliveryId", "data"}`), in the spirit of
//! MongoDB's query language:
//!
//! ```json
//! {"data.dataSourceId": {"$in": ["pump-1", "pump-2"]},
//!  "$or": [{"data.severity": "high"}, {"data.currentValue": {"$gte": 30}}]}
//! ```
//!
//! - A key is a dotted path into the envelope (`data.dataPoint.values.temperature`; a segment of
//!   digits indexes an array) or a logical operator: `$and` / `$or` (a non-empty array of
//!   filters) or `$not` (a filter). The keys of one object must all hold (an implicit `$and`).
//! - A path's value is either a plain JSON value (meaning `$eq`) or an object of operators, all
//!   of which must hold: `$eq $ne $gt $gte $lt $lte $in $nin $exists $contains $startsWith`.
//! - Comparisons are JavaScript's strict ones: no type coercion (`"1"` is not `1`), numbers by
//!   value as doubles (`30` equals `30.0`), strings ordered by UTF-16 code units; arrays and
//!   objects are equal when their contents are. An ordering operator between different types
//!   (a string and a number) is false.
//! - A missing path matches only `$ne`, `$nin` and `$exists: false`.
//!
//! A filter is parsed once, when a webhook is created or changed, into a typed tree: evaluation
//! walks that tree once (linear in the filter's size and the operands', never recursive on the
//! event beyond the paths named), and cannot fail or panic. The limits —
//! [`MAX_CONDITIONS`] operators, [`MAX_DEPTH`] levels of nesting, [`MAX_FILTER_BYTES`],
//! [`MAX_IN_VALUES`] — are checked at parse time; a filter that breaks one is refused with
//! `invalid_filter` and a message that names where (`filter.$or[1].data.severity.$gte: …`).
//! Regular expressions are not offered, on purpose: their cost depends on the input.
//!
//! Pure: no I/O, no clock.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::validate::ValidationError;

/// Most operators (conditions) in one filter; `$and`, `$or` and `$not` do not count.
pub const MAX_CONDITIONS: usize = 50;
/// Deepest nesting: the filter object is level 1, each `$and`/`$or`/`$not` adds one.
pub const MAX_DEPTH: usize = 5;
/// Largest filter, as compact JSON.
pub const MAX_FILTER_BYTES: usize = 16 * 1024;
/// Most values in one `$in` / `$nin` list.
pub const MAX_IN_VALUES: usize = 100;
/// Longest path (`data.a.b.c`).
pub const MAX_PATH_CHARS: usize = 256;
/// The envelope's fields: a path starts with one of them.
pub const ENVELOPE_FIELDS: [&str; 6] = [
    "event",
    "timestamp",
    "webhookId",
    "bucketId",
    "deliveryId",
    "data",
];

const CODE: &str = "invalid_filter";

/// A validated filter: the document as the user wrote it (shown back, stored) and its parsed
/// tree (evaluated).
#[derive(Debug, Clone)]
pub struct Filter {
    source: Value,
    root: Node,
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        // The tree is a function of the source.
        self.source == other.source
    }
}

#[derive(Debug, Clone)]
enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    Test { path: Vec<String>, op: Op },
}

#[derive(Debug, Clone)]
enum Op {
    Eq(Value),
    Ne(Value),
    Cmp(Ordering, /* or equal */ bool, Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Contains(Value),
    StartsWith(String),
}

impl Filter {
    /// Validates `source` (as sent in `filter`) and parses it.
    pub fn parse(source: Value) -> Result<Filter, ValidationError> {
        let size = serde_json::to_string(&source).map_or(usize::MAX, |s| s.len());
        if size > MAX_FILTER_BYTES {
            return Err(ValidationError::new(
                CODE,
                format!("filter must be at most {MAX_FILTER_BYTES} bytes as JSON, got {size}"),
            ));
        }
        let root = Parser::default().object(&source, "filter", 1)?;
        Ok(Filter { source, root })
    }

    /// Parses a filter as stored (its JSON text). Stores call this when reading a webhook back.
    pub fn from_json(text: &str) -> Result<Filter, ValidationError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| ValidationError::new(CODE, format!("filter is not JSON: {e}")))?;
        Self::parse(v)
    }

    /// The filter as the user wrote it.
    pub fn as_json(&self) -> &Value {
        &self.source
    }

    /// The filter as compact JSON text (how stores keep it).
    pub fn to_json(&self) -> String {
        self.source.to_string()
    }

    /// Whether an event, as its envelope, passes the filter.
    pub fn matches(&self, envelope: &Value) -> bool {
        self.root.eval(envelope)
    }
}

#[derive(Default)]
struct Parser {
    conditions: usize,
}

fn bad(at: &str, why: impl std::fmt::Display) -> ValidationError {
    ValidationError::new(CODE, format!("{at}: {why}"))
}

impl Parser {
    /// A filter object: paths and logical operators, all of which must hold.
    fn object(&mut self, v: &Value, at: &str, depth: usize) -> Result<Node, ValidationError> {
        if depth > MAX_DEPTH {
            return Err(bad(
                at,
                format!("filters nest at most {MAX_DEPTH} levels deep"),
            ));
        }
        let Value::Object(m) = v else {
            return Err(bad(at, "must be an object of conditions"));
        };
        if m.is_empty() {
            return Err(bad(
                at,
                "must have at least one condition (send null for no filter)",
            ));
        }
        let mut nodes = Vec::with_capacity(m.len());
        for (key, val) in m {
            let here = format!("{at}.{key}");
            match key.as_str() {
                "$and" | "$or" => {
                    let items = val
                        .as_array()
                        .filter(|a| !a.is_empty())
                        .ok_or_else(|| bad(&here, "must be a non-empty array of filters"))?;
                    let children = items
                        .iter()
                        .enumerate()
                        .map(|(i, c)| self.object(c, &format!("{here}[{i}]"), depth + 1))
                        .collect::<Result<Vec<_>, _>>()?;
                    nodes.push(if key == "$and" {
                        Node::All(children)
                    } else {
                        Node::Any(children)
                    });
                }
                "$not" => nodes.push(Node::Not(Box::new(self.object(val, &here, depth + 1)?))),
                k if k.starts_with('$') => {
                    return Err(bad(
                        &here,
                        "unknown key: a filter's keys are paths (data.…) or $and, $or, $not",
                    ));
                }
                k => {
                    let path = parse_path(k, &here)?;
                    self.conditions(path, val, &here, &mut nodes)?;
                }
            }
        }
        Ok(if nodes.len() == 1 {
            nodes.pop().unwrap_or_else(|| unreachable!("one node"))
        } else {
            Node::All(nodes)
        })
    }

    /// The conditions on one path: a plain value (`$eq`) or an object of operators.
    fn conditions(
        &mut self,
        path: Vec<String>,
        val: &Value,
        at: &str,
        out: &mut Vec<Node>,
    ) -> Result<(), ValidationError> {
        match val {
            Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => {
                if let Some(k) = ops.keys().find(|k| !k.starts_with('$')) {
                    return Err(bad(
                        &format!("{at}.{k}"),
                        "an object of operators cannot also hold plain keys \
                         (to compare with an object, use {\"$eq\": {…}})",
                    ));
                }
                for (name, arg) in ops {
                    let here = format!("{at}.{name}");
                    self.count(&here)?;
                    out.push(Node::Test {
                        path: path.clone(),
                        op: parse_op(name, arg, &here)?,
                    });
                }
            }
            plain => {
                self.count(at)?;
                out.push(Node::Test {
                    path,
                    op: Op::Eq(plain.clone()),
                });
            }
        }
        Ok(())
    }

    fn count(&mut self, at: &str) -> Result<(), ValidationError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(bad(
                at,
                format!("a filter has at most {MAX_CONDITIONS} conditions"),
            ));
        }
        Ok(())
    }
}

fn parse_path(key: &str, at: &str) -> Result<Vec<String>, ValidationError> {
    if key.chars().count() > MAX_PATH_CHARS {
        return Err(bad(
            at,
            format!("a path is at most {MAX_PATH_CHARS} characters"),
        ));
    }
    let path: Vec<String> = key.split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err(bad(at, "a path has no empty segments (data.a.b)"));
    }
    if !ENVELOPE_FIELDS.contains(&path[0].as_str()) {
        return Err(bad(
            at,
            format!(
                "a path starts with one of the envelope's fields: {} (the event's own fields are under data.)",
                ENVELOPE_FIELDS.join(", ")
            ),
        ));
    }
    Ok(path)
}

fn parse_op(name: &str, arg: &Value, at: &str) -> Result<Op, ValidationError> {
    let ordered = || match arg {
        Value::Number(_) | Value::String(_) => Ok(arg.clone()),
        _ => Err(bad(at, "must be a number or a string")),
    };
    let list = || match arg {
        Value::Array(a) if a.len() <= MAX_IN_VALUES => Ok(a.clone()),
        Value::Array(_) => Err(bad(at, format!("must list at most {MAX_IN_VALUES} values"))),
        _ => Err(bad(at, "must be an array of values")),
    };
    Ok(match name {
        "$eq" => Op::Eq(arg.clone()),
        "$ne" => Op::Ne(arg.clone()),
        "$gt" => Op::Cmp(Ordering::Greater, false, ordered()?),
        "$gte" => Op::Cmp(Ordering::Greater, true, ordered()?),
        "$lt" => Op::Cmp(Ordering::Less, false, ordered()?),
        "$lte" => Op::Cmp(Ordering::Less, true, ordered()?),
        "$in" => Op::In(list()?),
        "$nin" => Op::Nin(list()?),
        "$exists" => Op::Exists(
            arg.as_bool()
                .ok_or_else(|| bad(at, "must be true or false"))?,
        ),
        "$contains" => match arg {
            Value::Object(_) | Value::Array(_) => {
                return Err(bad(at, "must be a string, number, boolean or null"));
            }
            v => Op::Contains(v.clone()),
        },
        "$startsWith" => Op::StartsWith(
            arg.as_str()
                .ok_or_else(|| bad(at, "must be a string"))?
                .to_owned(),
        ),
        "$and" | "$or" | "$not" => {
            return Err(bad(
                at,
                "logical operators go above paths: {\"$or\": [{\"data.a\": 1}, {\"data.b\": 2}]}",
            ));
        }
        _ => {
            return Err(bad(
                at,
                "unknown operator; known: $eq $ne $gt $gte $lt $lte $in $nin $exists $contains $startsWith",
            ));
        }
    })
}

impl Node {
    fn eval(&self, doc: &Value) -> bool {
        match self {
            Node::All(v) => v.iter().all(|n| n.eval(doc)),
            Node::Any(v) => v.iter().any(|n| n.eval(doc)),
            Node::Not(n) => !n.eval(doc),
            Node::Test { path, op } => op.eval(lookup(doc, path)),
        }
    }
}

impl Op {
    fn eval(&self, found: Option<&Value>) -> bool {
        match (self, found) {
            (Op::Ne(_) | Op::Nin(_), None) => true,
            (Op::Exists(want), found) => found.is_some() == *want,
            (_, None) => false,
            (Op::Eq(x), Some(v)) => js_eq(v, x),
            (Op::Ne(x), Some(v)) => !js_eq(v, x),
            (Op::Cmp(dir, or_equal, x), Some(v)) => match js_cmp(v, x) {
                Some(Ordering::Equal) => *or_equal,
                Some(o) => o == *dir,
                None => false,
            },
            (Op::In(xs), Some(v)) => xs.iter().any(|x| js_eq(v, x)),
            (Op::Nin(xs), Some(v)) => !xs.iter().any(|x| js_eq(v, x)),
            (Op::Contains(x), Some(Value::String(s))) => {
                x.as_str().is_some_and(|needle| s.contains(needle))
            }
            (Op::Contains(x), Some(Value::Array(items))) => items.iter().any(|i| js_eq(i, x)),
            (Op::Contains(_), Some(_)) => false,
            (Op::StartsWith(p), Some(v)) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
        }
    }
}

/// The value at `path`, if there is one.
fn lookup<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for seg in path {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) if seg.bytes().all(|b| b.is_ascii_digit()) => {
                a.get(seg.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

/// JavaScript's `===` for JSON values, extended to arrays and objects by content.
fn js_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| js_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => objects_eq(x, y),
        _ => a == b,
    }
}

fn objects_eq(x: &Map<String, Value>, y: &Map<String, Value>) -> bool {
    x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| js_eq(v, w)))
}

/// JavaScript's `<` between two numbers or two strings (UTF-16 code unit order); `None` for
/// any other pair.
fn js_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.encode_utf16().cmp(y.encode_utf16())),
        _ => None,
    }
}

/// The filter language as the OpenAPI document describes it (a `filter` in request and
/// response bodies is a [`Filter`]'s JSON).
#[derive(Debug)]
pub struct FilterSchema;

impl utoipa::PartialSchema for FilterSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        let description = format!(
            "Matched against the event's envelope when it is published; only matching events are \
             queued and delivered. Keys: dotted paths into the envelope (`data.dataSourceId`, \
             `data.dataPoint.values.temperature`, `event`, `timestamp`, `bucketId`; a segment of \
             digits indexes an array) or `$and`/`$or` (non-empty arrays of filters) and `$not` \
             (a filter); all keys must hold. A path's value is a plain JSON value (equality) or an \
             object of operators that must all hold: `$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte` \
             (a number or a string), `$in`, `$nin` (arrays of at most {MAX_IN_VALUES} values), \
             `$exists` (boolean), `$contains` (substring of a string, or element of an array), \
             `$startsWith` (a string). Comparisons are JavaScript's strict ones: no type \
             coercion, numbers by value as doubles, strings by UTF-16 code units. A missing path \
             matches only `$ne`, `$nin` and `$exists: false`. At most {MAX_CONDITIONS} operators, \
             {MAX_DEPTH} levels of nesting, {MAX_FILTER_BYTES} bytes; otherwise \
             400 `invalid_filter` naming the path."
        );
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(description))
            .min_properties(Some(1))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(
                        r"^(\$and|\$or|\$not|(event|timestamp|webhookId|bucketId|deliveryId|data)(\.[^.]+)*)$",
                    )),
            ))
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .examples([serde_json::json!({
                "data.dataSourceId": {"$in": ["pump-1", "pump-2", "pump-3"]},
                "$or": [{"data.severity": "high"}, {"data.currentValue": {"$gte": 30}}]
            })])
            .into()
    }
}

impl utoipa::ToSchema for FilterSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Filter")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({
            "event": "data.received",
            "timestamp": "2024-01-15T10:30:00Z",
            "webhookId": "507f1f77bcf86cd799439011",
            "bucketId": "507f1f77bcf86cd799439022",
            "deliveryId": "507f1f77bcf86cd799439033",
            "data": {
                "dataSourceId": "pump-1",
                "dataSourceName": "Pump 1 — hall ☃",
                "severity": "high",
                "currentValue": 31.5,
                "threshold": 30,
                "big": 9007199254740993u64,
                "active": true,
                "note": null,
                "tags": ["site-a", "critical", 7],
                "dataPoint": {"values": {"temperature": 30.0}, "metadata": {"site": "A"}},
                "readings": [{"v": 1}, {"v": 2}]
            }
        })
    }

    fn m(f: Value) -> bool {
        Filter::parse(f.clone())
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .matches(&event())
    }

    fn err(f: Value) -> String {
        let e = Filter::parse(f.clone()).expect_err(&f.to_string());
        assert_eq!(e.code, "invalid_filter");
        e.message
    }

    #[test]
    fn every_operator_on_matching_and_non_matching_values() {
        // (filter, expected) — each operator both ways.
        let table = [
            (json!({"data.dataSourceId": "pump-1"}), true),
            (json!({"data.dataSourceId": "pump-2"}), false),
            (json!({"data.dataSourceId": {"$eq": "pump-1"}}), true),
            (json!({"data.dataSourceId": {"$ne": "pump-1"}}), false),
            (json!({"data.dataSourceId": {"$ne": "pump-2"}}), true),
            (json!({"data.currentValue": {"$gt": 31}}), true),
            (json!({"data.currentValue": {"$gt": 31.5}}), false),
            (json!({"data.currentValue": {"$gte": 31.5}}), true),
            (json!({"data.currentValue": {"$gte": 32}}), false),
            (json!({"data.currentValue": {"$lt": 32}}), true),
            (json!({"data.currentValue": {"$lt": 31.5}}), false),
            (json!({"data.currentValue": {"$lte": 31.5}}), true),
            (json!({"data.currentValue": {"$lte": -1}}), false),
            (
                json!({"data.severity": {"$in": ["high", "critical"]}}),
                true,
            ),
            (json!({"data.severity": {"$in": ["low"]}}), false),
            (json!({"data.severity": {"$in": []}}), false),
            (json!({"data.severity": {"$nin": ["low", "medium"]}}), true),
            (json!({"data.severity": {"$nin": ["high"]}}), false),
            (json!({"data.severity": {"$exists": true}}), true),
            (json!({"data.severity": {"$exists": false}}), false),
            (json!({"data.missing": {"$exists": false}}), true),
            (json!({"data.note": {"$exists": true}}), true),
            (json!({"data.dataSourceName": {"$contains": "hall"}}), true),
            (json!({"data.dataSourceName": {"$contains": "☃"}}), true),
            (json!({"data.dataSourceName": {"$contains": "yard"}}), false),
            (json!({"data.tags": {"$contains": "critical"}}), true),
            (json!({"data.tags": {"$contains": 7.0}}), true),
            (json!({"data.tags": {"$contains": "crit"}}), false),
            (json!({"data.dataSourceId": {"$startsWith": "pump-"}}), true),
            (
                json!({"data.dataSourceId": {"$startsWith": "valve-"}}),
                false,
            ),
            (json!({"event": "data.received"}), true),
            (json!({"bucketId": "507f1f77bcf86cd799439022"}), true),
            (json!({"timestamp": {"$gte": "2024-01-01T00:00:00Z"}}), true),
            (json!({"timestamp": {"$lt": "2024-01-01T00:00:00Z"}}), false),
            // Several operators on one path: all must hold (a range).
            (json!({"data.currentValue": {"$gt": 30, "$lt": 40}}), true),
            (json!({"data.currentValue": {"$gt": 30, "$lt": 31}}), false),
        ];
        for (f, want) in table {
            assert_eq!(m(f.clone()), want, "{f}");
        }
    }

    #[test]
    fn and_or_not_and_nesting() {
        let table = [
            (
                json!({"data.severity": "high", "data.dataSourceId": "pump-1"}),
                true,
            ),
            (
                json!({"data.severity": "high", "data.dataSourceId": "pump-2"}),
                false,
            ),
            (
                json!({"$and": [{"data.severity": "high"}, {"data.threshold": 30}]}),
                true,
            ),
            (
                json!({"$and": [{"data.severity": "high"}, {"data.threshold": 31}]}),
                false,
            ),
            (
                json!({"$or": [{"data.severity": "low"}, {"data.threshold": 30}]}),
                true,
            ),
            (
                json!({"$or": [{"data.severity": "low"}, {"data.threshold": 31}]}),
                false,
            ),
            (json!({"$not": {"data.severity": "low"}}), true),
            (json!({"$not": {"data.severity": "high"}}), false),
            // Depth 5: filter > $or > $and > $not > $or.
            (
                json!({"$or": [
                    {"data.severity": "low"},
                    {"$and": [
                        {"data.dataSourceId": {"$startsWith": "pump"}},
                        {"$not": {"$or": [{"data.currentValue": {"$lt": 0}}, {"data.active": false}]}}
                    ]}
                ]}),
                true,
            ),
        ];
        for (f, want) in table {
            assert_eq!(m(f.clone()), want, "{f}");
        }
    }

    #[test]
    fn paths_reach_into_nested_objects_and_arrays_and_missing_paths_match_only_negations() {
        assert!(m(json!({"data.dataPoint.values.temperature": 30})));
        assert!(m(json!({"data.dataPoint.metadata.site": "A"})));
        assert!(m(json!({"data.readings.1.v": 2})));
        assert!(m(json!({"data.tags.0": "site-a"})));
        assert!(!m(json!({"data.tags.9": "site-a"})));
        assert!(!m(json!({"data.tags.x": "site-a"})));
        // Through a scalar, or a key that is not there: missing.
        for path in [
            "data.missing",
            "data.severity.level",
            "data.dataPoint.values.humidity",
            "data.readings.-1",
        ] {
            assert!(!m(json!({path: "x"})), "{path} $eq");
            assert!(!m(json!({path: {"$gt": 0}})), "{path} $gt");
            assert!(!m(json!({path: {"$in": ["x"]}})), "{path} $in");
            assert!(!m(json!({path: {"$contains": "x"}})), "{path} $contains");
            assert!(!m(json!({path: {"$startsWith": ""}})), "{path} $startsWith");
            assert!(!m(json!({path: null})), "{path}: null is not missing");
            assert!(m(json!({path: {"$ne": "x"}})), "{path} $ne");
            assert!(m(json!({path: {"$nin": ["x"]}})), "{path} $nin");
            assert!(m(json!({path: {"$exists": false}})), "{path} $exists");
        }
        assert!(m(json!({"data.note": null})));
        // Objects and arrays compare by content.
        assert!(m(json!({"data.dataPoint.metadata": {"site": "A"}})));
        assert!(m(
            json!({"data.dataPoint.metadata": {"$eq": {"site": "A"}}})
        ));
        assert!(!m(json!({"data.dataPoint.metadata": {"site": "B"}})));
        assert!(m(json!({"data.tags": ["site-a", "critical", 7]})));
        assert!(!m(json!({"data.tags": ["site-a", "critical"]})));
    }

    #[test]
    fn types_never_coerce_and_numbers_compare_as_javascript_doubles() {
        // No coercion: "31.5" is not 31.5, true is not 1, null is not 0 or "".
        assert!(!m(json!({"data.currentValue": "31.5"})));
        assert!(!m(json!({"data.currentValue": {"$gt": "30"}})));
        assert!(!m(json!({"data.severity": {"$gt": 1}})));
        assert!(!m(json!({"data.active": 1})));
        assert!(!m(json!({"data.note": 0})));
        assert!(!m(json!({"data.note": {"$lt": 1}})));
        assert!(!m(json!({"data.currentValue": {"$contains": "31"}})));
        assert!(!m(json!({"data.currentValue": {"$startsWith": "3"}})));
        // 30 === 30.0 and 3e1; 2^53 + 1 is the double 2^53, as in JavaScript.
        assert!(m(json!({"data.threshold": 30.0})));
        assert!(m(json!({"data.threshold": 3e1})));
        assert!(m(json!({"data.big": 9007199254740992u64})));
        assert!(m(json!({"data.big": {"$lte": 9007199254740992.0}})));
        assert!(m(json!({"data.currentValue": {"$in": [31.50, 1]}})));
        // Strings order by UTF-16 code units, as `<` does in JavaScript: U+FF5E (one unit)
        // sorts after U+1F600 (a surrogate pair starting 0xD83D), unlike in UTF-8 or by code point.
        let emoji = json!({"data": {"s": "\u{1F600}"}});
        let f = Filter::parse(json!({"data.s": {"$lt": "\u{FF5E}"}})).unwrap();
        assert!(f.matches(&emoji));
        assert!(m(json!({"data.severity": {"$gt": "High"}})));
    }

    #[test]
    fn invalid_filters_are_refused_with_the_path_that_is_wrong() {
        let cases = [
            (json!([]), "filter: must be an object"),
            (json!("x"), "filter: must be an object"),
            (json!({}), "filter: must have at least one condition"),
            (
                json!({"severity": "high"}),
                "filter.severity: a path starts with",
            ),
            (json!({"data..x": 1}), "filter.data..x: a path has no empty"),
            (json!({"data.": 1}), "filter.data.: a path has no empty"),
            (json!({"$nor": []}), "filter.$nor: unknown key"),
            (
                json!({"$and": []}),
                "filter.$and: must be a non-empty array",
            ),
            (
                json!({"$or": {"data.a": 1}}),
                "filter.$or: must be a non-empty array",
            ),
            (json!({"$not": []}), "filter.$not: must be an object"),
            (
                json!({"$or": [{"data.a": 1}, {"data.b": {"$regex": "x"}}]}),
                "filter.$or[1].data.b.$regex: unknown operator",
            ),
            (
                json!({"data.a": {"$gt": true}}),
                "filter.data.a.$gt: must be a number or a string",
            ),
            (
                json!({"data.a": {"$lte": null}}),
                "filter.data.a.$lte: must be a number or a string",
            ),
            (
                json!({"data.a": {"$in": "x"}}),
                "filter.data.a.$in: must be an array",
            ),
            (
                json!({"data.a": {"$nin": 3}}),
                "filter.data.a.$nin: must be an array",
            ),
            (
                json!({"data.a": {"$exists": 1}}),
                "filter.data.a.$exists: must be true or false",
            ),
            (
                json!({"data.a": {"$startsWith": 1}}),
                "filter.data.a.$startsWith: must be a string",
            ),
            (
                json!({"data.a": {"$contains": [1]}}),
                "filter.data.a.$contains: must be a string",
            ),
            (
                json!({"data.a": {"$or": [{"data.b": 1}]}}),
                "filter.data.a.$or: logical operators",
            ),
            (
                json!({"data.a": {"$eq": 1, "b": 2}}),
                "filter.data.a.b: an object of operators",
            ),
            (
                json!({"$not": {"$not": {"$not": {"$not": {"$not": {"data.a": 1}}}}}}),
                "filter.$not.$not.$not.$not.$not: filters nest at most 5",
            ),
            (
                json!({"data.a": {"$in": (0..101).collect::<Vec<_>>()}}),
                "filter.data.a.$in: must list at most 100",
            ),
        ];
        for (f, want) in cases {
            let got = err(f.clone());
            assert!(got.starts_with(want), "{f}: got {got:?}, want {want:?}…");
        }
        // 50 conditions pass, 51 do not (spread over paths and operators).
        let mut ok = Map::new();
        for i in 0..25 {
            ok.insert(format!("data.f{i}"), json!({"$gte": 0, "$lte": 9}));
        }
        assert!(Filter::parse(Value::Object(ok.clone())).is_ok());
        ok.insert("data.last".into(), json!(1));
        assert!(err(Value::Object(ok)).contains("at most 50 conditions"));
        let huge = json!({"data.a": "x".repeat(MAX_FILTER_BYTES)});
        assert!(err(huge).starts_with("filter must be at most"));
        let long = format!("data.{}", "a".repeat(MAX_PATH_CHARS));
        assert!(err(json!({long: 1})).contains("at most 256 characters"));
    }

    #[test]
    fn a_filter_round_trips_through_its_stored_text() {
        let f = Filter::parse(json!({"data.b": 1, "data.a": {"$in": [1, 2.5]}})).unwrap();
        let back = Filter::from_json(&f.to_json()).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.as_json(), f.as_json());
        // Key order as written is kept (serde_json's preserve_order).
        assert!(f.to_json().starts_with(r#"{"data.b":1"#), "{}", f.to_json());
        assert_eq!(Filter::from_json("{").unwrap_err().code, "invalid_filter");
    }
}
