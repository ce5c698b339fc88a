//! Custom headers (DESIGN.md §8): up to [`MAX_CUSTOM_HEADERS`] static headers a webhook sends
//! with every attempt and test send — an `X-Api-Key` or `Authorization` a receiver's API gateway
//! wants.
//!
//! Their values are credentials, so they are treated like the signing secret: [`CustomHeaders`]
//! is the one place they live on a webhook (the stores keep it as one value, so encrypting it at
//! rest is a change here and in the stores' codecs only), its `Debug` never shows a value, API
//! responses show names and a [`hint`](CustomHeaders::hints), and queue messages never carry
//! them: the dispatcher reads them from the store at send time, like the secret.
//!
//! Validation: names are RFC 9110 tokens of at most [`MAX_HEADER_NAME_CHARS`], unique without
//! regard to case, and not one the service sets or HTTP reserves ([`is_reserved`]); values are
//! printable ASCII (space allowed inside, not at either end) of at most [`MAX_HEADER_VALUE_BYTES`].
//! A bad header is refused with 400 `invalid_headers` naming it, never its value.
//!
//! Pure: no I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validate::ValidationError;

/// Most custom headers on one webhook.
pub const MAX_CUSTOM_HEADERS: usize = 10;
/// Longest value, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 1024;
/// Longest name.
pub const MAX_HEADER_NAME_CHARS: usize = 128;
/// Values shorter than this get no characters in their hint (showing four of a short value
/// would give away too much of it).
const MIN_HINTED_VALUE_CHARS: usize = 16;

const CODE: &str = "invalid_headers";

/// Names the service sets itself, and hop-by-hop headers (RFC 9110 §7.6.1) that describe one
/// connection rather than the request (plus `Expect`, which would change how the request is
/// sent). Compared in lowercase; `x-webhook-*` and `webhook-*` are reserved as prefixes.
const RESERVED: [&str; 14] = [
    "host",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// Whether `name` (any case) is one a webhook may not set.
pub fn is_reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    RESERVED.contains(&lower.as_str())
        || lower.starts_with("x-webhook-")
        || lower.starts_with("webhook-")
}

/// One header as stored: the name as the user wrote it, and its value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CustomHeader {
    name: String,
    value: String,
}

/// A webhook's custom headers, in the order given. `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomHeaders(Vec<CustomHeader>);

impl fmt::Debug for CustomHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|h| format!("{}: <redacted>", h.name)))
            .finish()
    }
}

/// A header as responses show it: its name and a hint of its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HeaderHint {
    #[schema(example = "X-Api-Key")]
    pub name: String,
    /// `…` and the value's last four characters (just `…` for a value under 16 characters).
    #[schema(example = "…a1b2")]
    pub hint: String,
}

impl CustomHeaders {
    /// Validated headers from `(name, value)` pairs (a request's `headers` object).
    pub fn parse<I>(pairs: I) -> Result<CustomHeaders, ValidationError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut out = CustomHeaders::default();
        for (name, value) in pairs {
            out.set(name, value)?;
        }
        Ok(out)
    }

    /// Reads headers back as a store keeps them ([`to_json`](Self::to_json)), checking them
    /// again.
    pub fn from_json(text: &str) -> Result<CustomHeaders, ValidationError> {
        let stored: Vec<CustomHeader> = serde_json::from_str(text)
            .map_err(|e| ValidationError::new(CODE, format!("headers are not readable: {e}")))?;
        Self::parse(stored.into_iter().map(|h| (h.name, h.value)))
    }

    /// How stores keep them: a JSON array of `{"name", "value"}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| unreachable!("strings serialize"))
    }

    /// Adds a header or replaces the value of one with the same name (any case).
    pub fn set(&mut self, name: String, value: String) -> Result<(), ValidationError> {
        check_name(&name)?;
        check_value(&name, &value)?;
        match self.position(&name) {
            Some(i) => self.0[i] = CustomHeader { name, value },
            None if self.0.len() >= MAX_CUSTOM_HEADERS => {
                return Err(ValidationError::new(
                    CODE,
                    format!("a webhook has at most {MAX_CUSTOM_HEADERS} custom headers"),
                ));
            }
            None => self.0.push(CustomHeader { name, value }),
        }
        Ok(())
    }

    /// Removes the header `name` (any case), if there is one.
    pub fn remove(&mut self, name: &str) {
        if let Some(i) = self.position(name) {
            self.0.remove(i);
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.0
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(name))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `(name, value)` pairs, for the request. Call sites are few on purpose: the dispatcher.
    pub fn expose(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|h| (h.name.as_str(), h.value.as_str()))
    }

    /// Names and hints, for responses.
    pub fn hints(&self) -> Vec<HeaderHint> {
        self.0
            .iter()
            .map(|h| {
                let n = h.value.chars().count();
                let tail: String = if n >= MIN_HINTED_VALUE_CHARS {
                    h.value.chars().skip(n - 4).collect()
                } else {
                    String::new()
                };
                HeaderHint {
                    name: h.name.clone(),
                    hint: format!("…{tail}"),
                }
            })
            .collect()
    }
}

/// A `headers` object of a create request: `{"X-Api-Key": "…"}`, every value a string.
pub fn from_request(
    map: serde_json::Map<String, serde_json::Value>,
) -> Result<CustomHeaders, ValidationError> {
    let mut out = CustomHeaders::default();
    for (name, value) in map {
        match value {
            serde_json::Value::String(v) => out.set(name, v)?,
            _ => return Err(not_a_string(&name)),
        }
    }
    Ok(out)
}

fn not_a_string(name: &str) -> ValidationError {
    let shown: String = name.chars().take(MAX_HEADER_NAME_CHARS).collect();
    ValidationError::new(
        CODE,
        format!("header {shown:?}: the value must be a string"),
    )
}

/// What a PATCH asks of the headers: `null` removes them all; an object sets the headers it
/// names (any case) and removes those whose value is `null`, keeping the others — values are
/// write-only, so a client cannot send back the ones it does not change.
#[derive(Clone, PartialEq, Eq)]
pub enum HeadersChange {
    Clear,
    Edit(Vec<(String, Option<String>)>),
}

impl fmt::Debug for HeadersChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadersChange::Clear => f.write_str("Clear"),
            HeadersChange::Edit(v) => f
                .debug_list()
                .entries(v.iter().map(|(n, v)| {
                    format!("{n}: {}", if v.is_some() { "<set>" } else { "<remove>" })
                }))
                .finish(),
        }
    }
}

impl HeadersChange {
    /// Checks a PATCH's `headers` (absent is `None`, `null` is `Some(None)`): names and values
    /// are validated here, before anything is read or written.
    pub fn parse(
        raw: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<HeadersChange, ValidationError> {
        let Some(map) = raw else {
            return Ok(HeadersChange::Clear);
        };
        let mut edits = Vec::with_capacity(map.len());
        for (name, value) in map {
            match value {
                serde_json::Value::Null => {
                    check_name(&name)?;
                    edits.push((name, None));
                }
                serde_json::Value::String(v) => {
                    check_name(&name)?;
                    check_value(&name, &v)?;
                    edits.push((name, Some(v)));
                }
                _ => return Err(not_a_string(&name)),
            }
        }
        Ok(HeadersChange::Edit(edits))
    }

    /// The headers after the change (at most [`MAX_CUSTOM_HEADERS`]).
    pub fn apply(self, current: &CustomHeaders) -> Result<CustomHeaders, ValidationError> {
        match self {
            HeadersChange::Clear => Ok(CustomHeaders::default()),
            HeadersChange::Edit(edits) => {
                let mut out = current.clone();
                for (name, value) in edits {
                    match value {
                        Some(v) => out.set(name, v)?,
                        None => out.remove(&name),
                    }
                }
                Ok(out)
            }
        }
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn check_name(name: &str) -> Result<(), ValidationError> {
    let shown: String = name.chars().take(MAX_HEADER_NAME_CHARS).collect();
    if name.is_empty() || name.chars().count() > MAX_HEADER_NAME_CHARS {
        return Err(ValidationError::new(
            CODE,
            format!("header name {shown:?} must be 1 to {MAX_HEADER_NAME_CHARS} characters"),
        ));
    }
    if !name.chars().all(is_tchar) {
        return Err(ValidationError::new(
            CODE,
            format!(
                "header name {shown:?} is not an RFC 9110 token (letters, digits and !#$%&'*+-.^_`|~)"
            ),
        ));
    }
    if is_reserved(name) {
        return Err(ValidationError::new(
            CODE,
            format!(
                "header {name:?} cannot be set: Host, Content-Length, Content-Type, User-Agent, \
                 X-Webhook-*, webhook-* and hop-by-hop headers belong to the service"
            ),
        ));
    }
    Ok(())
}

/// Checks a value; the message names the header, never the value.
fn check_value(name: &str, value: &str) -> Result<(), ValidationError> {
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Err(ValidationError::new(
            CODE,
            format!("header {name:?}: the value must be at most {MAX_HEADER_VALUE_BYTES} bytes"),
        ));
    }
    if value.is_empty() || value.trim() != value {
        return Err(ValidationError::new(
            CODE,
            format!("header {name:?}: the value must be non-empty, without surrounding spaces"),
        ));
    }
    if !value.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
        return Err(ValidationError::new(
            CODE,
            format!(
                "header {name:?}: the value must be printable ASCII (no control characters, tabs or line breaks)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: &str) -> Result<CustomHeaders, ValidationError> {
        CustomHeaders::parse([(name.to_owned(), value.to_owned())])
    }

    #[test]
    fn good_headers_are_kept_in_order_and_replaced_case_insensitively() {
        let mut h = CustomHeaders::parse([
            ("X-Api-Key".to_owned(), "k-1234567890abcdef".to_owned()),
            ("Authorization".to_owned(), "Bearer abc.def ghi".to_owned()),
        ])
        .unwrap();
        h.set("x-api-key".into(), "k2-1234567890abcdef".into())
            .unwrap();
        let pairs: Vec<_> = h.expose().collect();
        assert_eq!(
            pairs,
            vec![
                ("x-api-key", "k2-1234567890abcdef"),
                ("Authorization", "Bearer abc.def ghi")
            ]
        );
        h.remove("AUTHORIZATION");
        assert_eq!(h.len(), 1);
        assert_eq!(CustomHeaders::from_json(&h.to_json()).unwrap(), h);
    }

    #[test]
    fn reserved_and_malformed_names_are_refused() {
        for name in [
            "Host",
            "content-length",
            "Content-Type",
            "USER-AGENT",
            "X-Webhook-Signature",
            "x-webhook-anything",
            "webhook-id",
            "Webhook-Signature",
            "Connection",
            "Transfer-Encoding",
            "TE",
            "Upgrade",
            "Keep-Alive",
            "Proxy-Authorization",
            "",
            "X Api Key",
            "X-Api-Key:",
            "Ключ",
            "X-(comment)",
        ] {
            let e = one(name, "value").expect_err(name);
            assert_eq!(e.code, "invalid_headers", "{name}");
        }
        assert!(one(&"x".repeat(MAX_HEADER_NAME_CHARS + 1), "v").is_err());
        assert!(one("X-Custom_Header.v2~!", "v").is_ok());
    }

    #[test]
    fn bad_values_are_refused_without_repeating_them() {
        for value in [
            "",
            " padded",
            "padded ",
            "line\nbreak",
            "cr\rlf",
            "tab\there",
            "nul\0",
            "del\u{7f}",
            "café",
        ] {
            let e = one("X-Api-Key", value).expect_err(value);
            assert_eq!(e.code, "invalid_headers");
            assert!(e.message.contains("X-Api-Key"), "{}", e.message);
            if !value.trim().is_empty() {
                assert!(!e.message.contains(value.trim()), "{}", e.message);
            }
        }
        assert!(one("X-Api-Key", &"v".repeat(MAX_HEADER_VALUE_BYTES)).is_ok());
        let e = one("X-Api-Key", &"v".repeat(MAX_HEADER_VALUE_BYTES + 1)).unwrap_err();
        assert!(e.message.contains("at most 1024 bytes"));
    }

    #[test]
    fn a_patch_sets_removes_or_clears_and_keeps_the_rest() {
        let current = CustomHeaders::parse([
            ("X-Api-Key".to_owned(), "old-key".to_owned()),
            ("X-Tenant".to_owned(), "acme".to_owned()),
        ])
        .unwrap();
        let edit = serde_json::json!({"x-api-key": "new-key", "X-Tenant": null, "X-Extra": "1"});
        let change = HeadersChange::parse(edit.as_object().cloned()).unwrap();
        assert!(!format!("{change:?}").contains("new-key"));
        let got = change.apply(&current).unwrap();
        let pairs: Vec<_> = got.expose().collect();
        assert_eq!(pairs, vec![("x-api-key", "new-key"), ("X-Extra", "1")]);
        assert!(
            HeadersChange::parse(None)
                .unwrap()
                .apply(&current)
                .unwrap()
                .is_empty()
        );
        for bad in [
            serde_json::json!({"Host": null}),
            serde_json::json!({"X-A": 1}),
            serde_json::json!({"X-A": "bad\nvalue"}),
        ] {
            let e = HeadersChange::parse(bad.as_object().cloned()).unwrap_err();
            assert_eq!(e.code, "invalid_headers");
        }
        let eleven: serde_json::Map<_, _> = (0..11)
            .map(|i| (format!("X-H{i}"), serde_json::json!("v")))
            .collect();
        assert!(from_request(eleven.clone()).is_err());
        let e = HeadersChange::parse(Some(eleven))
            .unwrap()
            .apply(&current)
            .unwrap_err();
        assert!(e.message.contains("at most 10"));
    }

    #[test]
    fn at_most_ten_headers() {
        let ten = (0..10).map(|i| (format!("X-H{i}"), "v".to_owned()));
        let mut h = CustomHeaders::parse(ten).unwrap();
        let e = h.set("X-H10".into(), "v".into()).unwrap_err();
        assert!(e.message.contains("at most 10"), "{}", e.message);
        // Replacing one of the ten is fine.
        h.set("x-h3".into(), "w".into()).unwrap();
    }

    #[test]
    fn values_never_show_in_debug_or_hints() {
        let h = CustomHeaders::parse([
            (
                "X-Api-Key".to_owned(),
                "sk_live_0123456789abcdef".to_owned(),
            ),
            ("X-Short".to_owned(), "tiny-value".to_owned()),
        ])
        .unwrap();
        let debug = format!("{h:?}");
        assert!(
            !debug.contains("sk_live") && !debug.contains("tiny"),
            "{debug}"
        );
        let hints = h.hints();
        assert_eq!(hints[0].hint, "…cdef");
        assert_eq!(hints[1].hint, "…");
        assert_eq!(hints[1].name, "X-Short");
    }
}
