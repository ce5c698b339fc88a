//! Sample `data` for test sends: the guide's example payloads.

use serde_json::{Value, json};

use crate::EventType;

pub fn data_for(event: EventType) -> Value {
    match event {
        // Operational events are never sampled (no test send of them); the alert stands in.
        EventType::AlertTriggered
        | EventType::WebhookTest
        | EventType::WebhookFailing
        | EventType::WebhookDisabled
        | EventType::WebhookRecovered => json!({
            "alertId": "507f1f77bcf86cd799439015",
            "alertName": "High Temperature Warning",
            "dataSourceId": "507f1f77bcf86cd799439012",
            "dataSourceName": "Temperature Sensor - Room A",
            "condition": "Temperature exceeds 30°C for 5 minutes",
            "currentValue": 31.5,
            "threshold": 30,
            "operator": ">",
            "triggeredAt": "2024-01-15T10:30:00Z",
            "dataPoint": {
                "timestamp": "2024-01-15T10:30:00Z",
                "values": {"temperature": 31.5, "humidity": 65},
                "metadata": {"deviceId": "ESP32-001", "location": "Room A"}
            }
        }),
        EventType::DataReceived => json!({
            "dataSourceId": "507f1f77bcf86cd799439012",
            "dataSourceName": "Temperature Sensor - Room A",
            "dataPoint": {
                "_id": "507f1f77bcf86cd799439017",
                "timestamp": "2024-01-15T10:30:00Z",
                "values": {"temperature": 22.5, "humidity": 65},
                "metadata": {"deviceId": "ESP32-001"}
            }
        }),
        EventType::BucketUpdated => json!({
            "changes": {"retentionDays": {"old": 30, "new": 365}},
            "updatedBy": "507f1f77bcf86cd799439010",
            "updatedAt": "2024-01-15T10:30:00Z"
        }),
    }
}
