//! Native formats (DESIGN.md §4 "Formats"): a webhook can point straight at a Slack or Discord
//! incoming-webhook URL, with no relay. `json` sends the envelope; `slack` and `discord` send
//! the platform's message, built from the envelope the same way for every event type, with
//! values escaped for the platform's markup and cut to its documented limits. The body is still
//! signed (the headers are the same), so a relay can verify it too.
//!
//! Slack: <https://api.slack.com/reference/block-kit/blocks> (section text ≤ 3000 characters,
//! field text ≤ 2000, ≤ 10 fields, message `text` fallback; `&`, `<`, `>` escaped).
//! Discord: <https://discord.com/developers/docs/resources/message#embed-object-embed-limits>
//! (title ≤ 256, description ≤ 4096, ≤ 25 fields, name ≤ 256, value ≤ 1024, 6000 in all;
//! markdown characters escaped; `allowed_mentions` empty so no text can ping anyone).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::EventType;

/// What a webhook's request body looks like.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The envelope of the guide (default).
    #[default]
    Json,
    /// A Slack incoming-webhook message with blocks.
    Slack,
    /// A Discord webhook message with one embed.
    Discord,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Slack => "slack",
            Format::Discord => "discord",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Format::Json),
            "slack" => Ok(Format::Slack),
            "discord" => Ok(Format::Discord),
            other => Err(format!(
                "unknown format {other:?}; known formats: json, slack, discord"
            )),
        }
    }
}

/// The body for `format`, from the envelope (`{event, timestamp, webhookId, bucketId, deliveryId, data}`).
pub fn render(format: Format, envelope: &Value) -> Value {
    match format {
        Format::Json => envelope.clone(),
        Format::Slack => slack(&Message::from_envelope(envelope)),
        Format::Discord => discord(&Message::from_envelope(envelope)),
    }
}

/// A platform-neutral message: what every format shows.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    emoji: &'static str,
    title: String,
    description: String,
    fields: Vec<(String, String, bool)>,
    /// RFC 3339 time the message is about.
    time: Option<String>,
    color: u32,
}

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => crate::jsjson::to_string(other),
    }
}

impl Message {
    fn from_envelope(env: &Value) -> Message {
        let data = env.get("data").cloned().unwrap_or(Value::Null);
        let event: Option<EventType> = env
            .get("event")
            .and_then(Value::as_str)
            .and_then(|e| e.parse().ok());
        let test = event == Some(EventType::WebhookTest);
        // A test send carries a sample of another event: render it as that event, marked.
        let shown = if test {
            guess_sample(&data)
        } else {
            event.unwrap_or(EventType::WebhookTest)
        };
        let d = |k: &str| data.get(k);
        let mut m = match shown {
            EventType::AlertTriggered => Message {
                emoji: "🚨",
                title: format!("Alert: {}", text(d("alertName"))),
                description: text(d("condition")),
                fields: vec![
                    ("Current Value".into(), text(d("currentValue")), true),
                    (
                        "Threshold".into(),
                        format!("{} {}", text(d("operator")), text(d("threshold")))
                            .trim()
                            .to_owned(),
                        true,
                    ),
                    ("Data Source".into(), text(d("dataSourceName")), false),
                ],
                time: d("triggeredAt").and_then(Value::as_str).map(str::to_owned),
                color: 0xE01E5A,
            },
            EventType::DataReceived => {
                let point = d("dataPoint");
                let values = point
                    .and_then(|p| p.get("values"))
                    .and_then(Value::as_object);
                Message {
                    emoji: "📈",
                    title: format!("New data: {}", text(d("dataSourceName"))),
                    description: String::new(),
                    fields: values
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), text(Some(v)), true))
                                .collect()
                        })
                        .unwrap_or_default(),
                    time: point
                        .and_then(|p| p.get("timestamp"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    color: 0x2EB67D,
                }
            }
            // Operational events go to notification endpoints, always JSON.
            EventType::BucketUpdated
            | EventType::WebhookTest
            | EventType::WebhookFailing
            | EventType::WebhookDisabled
            | EventType::WebhookRecovered => Message {
                emoji: "🛠️",
                title: format!("Bucket updated: {}", text(env.get("bucketId"))),
                description: d("updatedBy")
                    .map(|u| format!("Updated by {}", text(Some(u))))
                    .unwrap_or_default(),
                fields: d("changes")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, c)| {
                                (
                                    k.clone(),
                                    format!("{} → {}", text(c.get("old")), text(c.get("new"))),
                                    true,
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                time: d("updatedAt").and_then(Value::as_str).map(str::to_owned),
                color: 0x36C5F0,
            },
        };
        if test {
            m.emoji = "✅";
            m.title = format!("Test: {}", m.title);
        }
        m.time = m.time.or_else(|| {
            env.get("timestamp")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        m
    }
}

fn guess_sample(data: &Value) -> EventType {
    if data.get("alertName").is_some() {
        EventType::AlertTriggered
    } else if data.get("dataPoint").is_some() {
        EventType::DataReceived
    } else {
        EventType::BucketUpdated
    }
}

/// Cuts to at most `max` characters, marking the cut with `…`.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack mrkdwn escaping: the three control characters.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Discord markdown escaping.
pub fn discord_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '[' | ']' | '(' | ')' | '-'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn slack(m: &Message) -> Value {
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": cut(format!("{} *{}*\n{}", m.emoji, slack_escape(&m.title), slack_escape(&m.description)).trim_end(), 3000)}
    })];
    let mut fields: Vec<Value> = m
        .fields
        .iter()
        .take(9)
        .map(|(k, v, _)| json!({"type": "mrkdwn", "text": cut(&format!("*{}:*\n{}", slack_escape(k), slack_escape(v)), 2000)}))
        .collect();
    if let Some(t) = &m.time {
        let fallback = slack_escape(t);
        let when = crate::Timestamp::parse(t)
            .map(|ts| {
                format!(
                    "<!date^{}^{{date_short_pretty}} {{time}}|{fallback}>",
                    ts.unix()
                )
            })
            .unwrap_or(fallback);
        fields.push(json!({"type": "mrkdwn", "text": format!("*Time:*\n{when}")}));
    }
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    let mut msg = Map::new();
    msg.insert(
        "text".into(),
        Value::String(cut(
            &format!("{} {}", m.emoji, slack_escape(&m.title)),
            3000,
        )),
    );
    msg.insert("blocks".into(), Value::Array(blocks));
    Value::Object(msg)
}

fn discord(m: &Message) -> Value {
    let title = cut(&format!("{} {}", m.emoji, m.title), 256);
    let description = cut(&discord_escape(&m.description), 4096);
    let mut budget = 6000usize.saturating_sub(title.chars().count() + description.chars().count());
    let mut fields = Vec::new();
    for (k, v, inline) in m.fields.iter().take(25) {
        let name = cut(k, 256);
        let value = cut(&discord_escape(if v.is_empty() { "-" } else { v }), 1024);
        let cost = name.chars().count() + value.chars().count();
        if cost > budget {
            break;
        }
        budget -= cost;
        fields.push(json!({"name": name, "value": value, "inline": inline}));
    }
    let mut embed = Map::new();
    embed.insert("title".into(), Value::String(title));
    if !description.is_empty() {
        embed.insert("description".into(), Value::String(description));
    }
    embed.insert("color".into(), json!(m.color));
    embed.insert("fields".into(), Value::Array(fields));
    if let Some(t) = m
        .time
        .as_deref()
        .and_then(|t| crate::Timestamp::parse(t).ok())
    {
        embed.insert("timestamp".into(), Value::String(t.to_rfc3339()));
    }
    json!({"embeds": [Value::Object(embed)], "allowed_mentions": {"parse": []}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::envelope;
    use crate::{BucketId, DeliveryId, Timestamp, WebhookId};

    fn env(event: EventType, data: Value) -> Value {
        envelope(
            event,
            Timestamp::parse("2024-01-15T10:30:00Z").unwrap(),
            &WebhookId::parse("507f1f77bcf86cd799439016").unwrap(),
            &BucketId::parse("507f1f77bcf86cd799439011").unwrap(),
            &DeliveryId::parse("507f1f77bcf86cd799439099").unwrap(),
            data,
        )
    }

    fn every_event() -> Vec<Value> {
        let mut test = crate::samples::data_for(EventType::DataReceived);
        test["test"] = json!(true);
        vec![
            env(
                EventType::AlertTriggered,
                crate::samples::data_for(EventType::AlertTriggered),
            ),
            env(
                EventType::DataReceived,
                crate::samples::data_for(EventType::DataReceived),
            ),
            env(
                EventType::BucketUpdated,
                crate::samples::data_for(EventType::BucketUpdated),
            ),
            env(EventType::WebhookTest, test),
        ]
    }

    #[test]
    fn slack_messages_have_text_and_blocks_within_slacks_limits_for_every_event() {
        for e in every_event() {
            let m = render(Format::Slack, &e);
            assert!(
                m["text"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty() && t.chars().count() <= 3000),
                "{m}"
            );
            let blocks = m["blocks"].as_array().unwrap();
            assert!(!blocks.is_empty() && blocks.len() <= 50);
            for b in blocks {
                assert_eq!(b["type"], "section");
                if let Some(t) = b.get("text") {
                    assert_eq!(t["type"], "mrkdwn");
                    assert!(t["text"].as_str().unwrap().chars().count() <= 3000);
                }
                if let Some(f) = b.get("fields") {
                    let f = f.as_array().unwrap();
                    assert!(!f.is_empty() && f.len() <= 10);
                    assert!(f.iter().all(|x| x["type"] == "mrkdwn"
                        && x["text"].as_str().unwrap().chars().count() <= 2000));
                }
            }
        }
        let alert = render(Format::Slack, &every_event()[0]);
        assert_eq!(alert["text"], "🚨 Alert: High Temperature Warning");
        let s = alert.to_string();
        assert!(
            s.contains("*Current Value:*\\n31.5") && s.contains("*Threshold:*\\n&gt; 30"),
            "{s}"
        );
        assert!(
            s.contains("<!date^1705314600^{date_short_pretty} {time}|2024-01-15T10:30:00Z>"),
            "{s}"
        );
        assert!(
            render(Format::Slack, &every_event()[3])["text"]
                .as_str()
                .unwrap()
                .starts_with("✅ Test: New data")
        );
    }

    #[test]
    fn discord_embeds_stay_within_discords_limits_for_every_event_and_never_ping() {
        for e in every_event() {
            let m = render(Format::Discord, &e);
            assert_eq!(m["allowed_mentions"], json!({"parse": []}));
            let embeds = m["embeds"].as_array().unwrap();
            assert_eq!(embeds.len(), 1);
            let em = &embeds[0];
            let title = em["title"].as_str().unwrap();
            assert!(!title.is_empty() && title.chars().count() <= 256);
            assert!(
                em.get("description")
                    .is_none_or(|d| d.as_str().unwrap().chars().count() <= 4096)
            );
            let fields = em["fields"].as_array().unwrap();
            assert!(fields.len() <= 25);
            let mut total = title.chars().count();
            for f in fields {
                let (n, v) = (f["name"].as_str().unwrap(), f["value"].as_str().unwrap());
                assert!(
                    !n.is_empty()
                        && n.chars().count() <= 256
                        && !v.is_empty()
                        && v.chars().count() <= 1024
                );
                total += n.chars().count() + v.chars().count();
            }
            assert!(total <= 6000);
            assert!(em["color"].is_u64() && em["timestamp"].is_string());
        }
        let alert = render(Format::Discord, &every_event()[0]);
        assert_eq!(
            alert["embeds"][0]["title"],
            "🚨 Alert: High Temperature Warning"
        );
        assert_eq!(alert["embeds"][0]["timestamp"], "2024-01-15T10:30:00Z");
    }

    #[test]
    fn markup_in_values_is_escaped_and_huge_values_are_cut() {
        let data = json!({"alertName": "<!channel> & *bold*", "condition": "x".repeat(10_000), "currentValue": "@everyone _hi_", "threshold": 1});
        let e = env(EventType::AlertTriggered, data);
        let s = render(Format::Slack, &e);
        let st = s.to_string();
        assert!(
            st.contains("&lt;!channel&gt; &amp; *bold*") && !st.contains("<!channel>"),
            "{st}"
        );
        assert!(
            s["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count()
                <= 3000
        );
        let d = render(Format::Discord, &e);
        assert!(
            d["embeds"][0]["description"]
                .as_str()
                .unwrap()
                .chars()
                .count()
                <= 4096
        );
        assert!(d.to_string().contains(r"@everyone \\_hi\\_"), "{d}");
        let many: Map<String, Value> = (0..40)
            .map(|i| (format!("v{i}"), json!("y".repeat(900))))
            .collect();
        let dp = env(
            EventType::DataReceived,
            json!({"dataSourceName": "s", "dataPoint": {"values": many}}),
        );
        let d = render(Format::Discord, &dp);
        let n = d["embeds"][0]["fields"].as_array().unwrap().len();
        assert!(n > 0 && n < 25, "cut to the 6000-character budget: {n}");
        assert!(
            render(Format::Slack, &dp)["blocks"][1]["fields"]
                .as_array()
                .unwrap()
                .len()
                <= 10
        );
    }

    #[test]
    fn formats_parse_and_json_is_the_envelope_unchanged() {
        assert_eq!("slack".parse::<Format>().unwrap(), Format::Slack);
        assert!("teams".parse::<Format>().is_err());
        let e = every_event().remove(0);
        assert_eq!(render(Format::Json, &e), e);
    }
}
