//! JSON written exactly as JavaScript's `JSON.stringify(JSON.parse(text))` writes it.
//!
//! The guide's Node.js check signs `JSON.stringify(req.body)` — the body *re-serialized* after
//! Express parsed it — while its Python check signs the raw bytes. Both verify only if the bytes
//! we send are a fixed point of JavaScript's parse + stringify. So delivery bodies are written:
//! - compact (no whitespace);
//! - numbers as IEEE doubles printed by ECMAScript `Number::toString` (`30.0` → `30`,
//!   `1e21` → `1e+21`, `0.0000001` → `1e-7`, `-0` → `0`, integers beyond 2^53 rounded as JS
//!   rounds them), via the `ryu-js` crate;
//! - strings escaped as `JSON.stringify` escapes them (`"`, `\`, `\b\f\n\r\t`, other control
//!   characters as lowercase `\u00xx`; everything else, U+2028/9 included, as raw UTF-8) — the
//!   same rules serde_json follows, which a test checks against real `node`;
//! - object keys in JavaScript's property order: integer-like keys ("array indices",
//!   `0`..`4294967294` in canonical form) first in ascending numeric order, then the others in
//!   insertion order (serde_json's `preserve_order` keeps that order when parsing).

use serde_json::{Map, Value};

/// Renders `value` as JavaScript's `JSON.stringify` would.
pub fn to_string(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value);
    out
}

/// Parses `text` and renders it as `JSON.stringify(JSON.parse(text))` would.
pub fn canonicalize(text: &str) -> Result<String, serde_json::Error> {
    Ok(to_string(&serde_json::from_str::<Value>(text)?))
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_number(out: &mut String, f: f64) {
    if !f.is_finite() {
        // JSON.stringify(NaN / Infinity) is null. JSON text cannot produce these, but be total.
        out.push_str("null");
    } else if f == 0.0 {
        out.push('0'); // also -0
    } else {
        out.push_str(ryu_js::Buffer::new().format_finite(f));
    }
}

fn write_str(out: &mut String, s: &str) {
    // serde_json escapes exactly the characters JSON.stringify escapes, the same way.
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => unreachable!("serializing a str cannot fail"),
    }
}

/// An ECMAScript array index: canonical decimal of an integer in 0..=2^32-2.
fn array_index(key: &str) -> Option<u32> {
    let ok = !key.is_empty()
        && key.len() <= 10
        && key.bytes().all(|b| b.is_ascii_digit())
        && (key == "0" || !key.starts_with('0'));
    if !ok {
        return None;
    }
    key.parse::<u64>()
        .ok()
        .filter(|n| *n < u32::MAX as u64)
        .map(|n| n as u32)
}

fn write_object(out: &mut String, map: &Map<String, Value>) {
    let mut indexed: Vec<(u32, &String, &Value)> = Vec::new();
    let mut named: Vec<(&String, &Value)> = Vec::with_capacity(map.len());
    for (k, v) in map {
        match array_index(k) {
            Some(i) => indexed.push((i, k, v)),
            None => named.push((k, v)),
        }
    }
    indexed.sort_by_key(|(i, _, _)| *i);
    out.push('{');
    let entries = indexed.into_iter().map(|(_, k, v)| (k, v)).chain(named);
    for (n, (k, v)) in entries.enumerate() {
        if n > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        write_value(out, v);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> String {
        canonicalize(s).unwrap()
    }

    #[test]
    fn numbers_print_as_javascript_prints_them() {
        assert_eq!(c("30.0"), "30");
        assert_eq!(c("31.5"), "31.5");
        assert_eq!(c("-0.0"), "0");
        assert_eq!(c("1e21"), "1e+21");
        assert_eq!(c("1e20"), "100000000000000000000");
        assert_eq!(c("0.000001"), "0.000001");
        assert_eq!(c("0.0000001"), "1e-7");
        assert_eq!(c("12345678901234567890"), "12345678901234567000");
        assert_eq!(c("9007199254740993"), "9007199254740992");
        assert_eq!(c("0.1"), "0.1");
        assert_eq!(c("1.7976931348623157e308"), "1.7976931348623157e+308");
        assert_eq!(c("5e-324"), "5e-324");
        assert_eq!(c("-123.456e2"), "-12345.6");
    }

    #[test]
    fn strings_are_escaped_as_json_stringify_escapes_them() {
        assert_eq!(c(r#""30°C — \u00e9 \ud83d\ude00""#), "\"30°C — é 😀\"");
        assert_eq!(
            c(r#""a\"b\\c\/d\b\f\n\r\t\u0001\u001f\u007f""#),
            "\"a\\\"b\\\\c/d\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}\""
        );
        assert_eq!(c(r#""\u2028\u2029""#), "\"\u{2028}\u{2029}\"");
    }

    #[test]
    fn keys_follow_javascript_property_order() {
        assert_eq!(
            c(r#"{"b":1,"10":2,"a":3,"2":4,"01":5,"-1":6,"4294967295":7,"4294967294":8}"#),
            r#"{"2":4,"10":2,"4294967294":8,"b":1,"a":3,"01":5,"-1":6,"4294967295":7}"#
        );
        // A repeated key keeps its first position and its last value, as JSON.parse does.
        assert_eq!(c(r#"{"x":1,"y":2,"x":3}"#), r#"{"x":3,"y":2}"#);
    }

    #[test]
    fn output_is_a_fixed_point() {
        let once = c(r#"{ "t": [1.0, 2.50, {"z": null, "0": true}], "s": "é" }"#);
        assert_eq!(once, r#"{"t":[1,2.5,{"0":true,"z":null}],"s":"é"}"#);
        assert_eq!(c(&once), once);
    }
}
