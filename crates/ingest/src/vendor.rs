//! Vendor dimensions — the fields the Qianfan and Alibaba dialects group and
//! filter by — from a call's attributes. One table serves every source:
//! Weave call `attributes` (as nested objects, `{"qianfan": {"app_id": …}}`,
//! or as dotted keys, `{"qianfan.app_id": …}`) and, with OTLP, span and
//! resource attributes (dotted keys).
//!
//! | attribute               | dimension      | dialect                     |
//! |-------------------------|----------------|-----------------------------|
//! | `qianfan.service_id`    | `service_id`   | Qianfan `serviceId`         |
//! | `qianfan.service_name`  | `service_name` | Qianfan `serviceName`       |
//! | `qianfan.app_id`        | `app_id`       | Qianfan `appId`             |
//! | `alibaba.client_id`     | `client_id`    | Alibaba `clientId`          |
//! | `alibaba.api_key_id`    | `api_key_id`   | Alibaba `apiKeyId`          |
//! | `alibaba.model_id`      | `model_id`     | Alibaba `modelId`           |
//! | `alibaba.resource_id`   | `resource_id`  | Alibaba `resourceId`        |
//!
//! Values are strings or integers (kept as their decimal text).

use polymeter_proto::v1::VendorDimensions;
use serde_json::Value;

/// Picks one dimension's slot out of [`VendorDimensions`].
pub type Slot = fn(&mut VendorDimensions) -> &mut Option<String>;

/// Each attribute, and the dimension it sets.
pub const ATTRIBUTES: &[(&str, Slot)] = &[
    ("qianfan.service_id", |v| &mut v.service_id),
    ("qianfan.service_name", |v| &mut v.service_name),
    ("qianfan.app_id", |v| &mut v.app_id),
    ("alibaba.client_id", |v| &mut v.client_id),
    ("alibaba.api_key_id", |v| &mut v.api_key_id),
    ("alibaba.model_id", |v| &mut v.model_id),
    ("alibaba.resource_id", |v| &mut v.resource_id),
];

/// A scalar attribute value as text: strings as they are, integers in
/// decimal; anything else is refused, naming the attribute.
pub fn text_of(name: &str, value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        _ => Err(format!(
            "{name} must be a string or an integer, got {value}"
        )),
    }
}

/// Vendor dimensions from a JSON attributes object (nested or dotted keys).
pub fn from_json(attributes: &Value) -> Result<VendorDimensions, String> {
    let mut out = VendorDimensions::default();
    if !attributes.is_object() {
        return Ok(out);
    }
    for (name, field) in ATTRIBUTES {
        let (namespace, key) = name.split_once('.').expect("dotted");
        let value = attributes
            .get(*name)
            .or_else(|| attributes.get(namespace).and_then(|ns| ns.get(key)));
        if let Some(value) = value {
            *field(&mut out) = text_of(name, value)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_and_dotted_attributes_both_set_dimensions() {
        let v = from_json(&json!({
            "qianfan": {"service_id": "svco-1", "app_id": 42},
            "qianfan.service_name": "chat",
            "alibaba.model_id": 7,
            "other": {"x": 1},
        }))
        .unwrap();
        assert_eq!(v.service_id.as_deref(), Some("svco-1"));
        assert_eq!(v.app_id.as_deref(), Some("42"));
        assert_eq!(v.service_name.as_deref(), Some("chat"));
        assert_eq!(v.model_id.as_deref(), Some("7"));
        assert_eq!(v.client_id, None);
    }

    #[test]
    fn a_non_scalar_value_is_refused_by_name() {
        let err = from_json(&json!({"alibaba": {"client_id": [1]}})).unwrap_err();
        assert!(err.contains("alibaba.client_id"), "{err}");
        assert!(from_json(&json!({"alibaba.client_id": 1.5})).is_err());
    }
}
