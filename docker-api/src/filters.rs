//! Docker's `filters` query parameter: a JSON object of filter name → values, in either the
//! current shape (`{"label":["a=b"]}`) or the older one clients still send
//! (`{"label":{"a=b":true}}`). Pure; each endpoint decides what the names mean.

use std::collections::{BTreeMap, HashMap};

use crate::error::ApiError;

#[derive(Debug, Default, Clone)]
pub struct Filters(HashMap<String, Vec<String>>);

impl Filters {
    pub fn parse(raw: Option<&str>) -> Result<Filters, ApiError> {
        let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
            return Ok(Filters::default());
        };
        let v: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid filters {raw:?}: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::bad_request(format!("invalid filters {raw:?}")))?;
        let mut out = HashMap::new();
        for (k, vals) in obj {
            let list: Vec<String> = match vals {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                serde_json::Value::Object(m) => m
                    .iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(true))
                    .map(|(k, _)| k.clone())
                    .collect(),
                serde_json::Value::String(s) => vec![s.clone()],
                _ => return Err(ApiError::bad_request(format!("invalid filter {k:?}"))),
            };
            out.insert(k.clone(), list);
        }
        Ok(Filters(out))
    }

    pub fn get(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn has(&self, name: &str) -> bool {
        !self.get(name).is_empty()
    }

    /// Every value of `name` must hold (the filter is absent, or one value matches).
    pub fn any(&self, name: &str, mut pred: impl FnMut(&str) -> bool) -> bool {
        let vals = self.get(name);
        vals.is_empty() || vals.iter().any(|v| pred(v))
    }

    /// `label=key` or `label=key=value`: every label filter must match (as Docker does).
    pub fn labels_match(&self, labels: &BTreeMap<String, String>) -> bool {
        self.get("label").iter().all(|f| label_matches(f, labels))
    }
}

fn label_matches(filter: &str, labels: &BTreeMap<String, String>) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(filter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_and_labels() {
        let f = Filters::parse(Some(r#"{"label":{"a=b":true},"status":["running"]}"#)).unwrap();
        assert_eq!(f.get("label"), ["a=b"]);
        assert_eq!(f.get("status"), ["running"]);
        let mut labels = BTreeMap::new();
        labels.insert("a".to_string(), "b".to_string());
        assert!(f.labels_match(&labels));
        labels.insert("a".to_string(), "c".to_string());
        assert!(!f.labels_match(&labels));
        let f = Filters::parse(Some(r#"{"label":["a"]}"#)).unwrap();
        assert!(f.labels_match(&labels));
        assert!(f.any("name", |_| false), "an absent filter passes");
        assert!(Filters::parse(Some("[1]")).is_err());
        assert!(Filters::parse(None).unwrap().get("x").is_empty());
    }
}
