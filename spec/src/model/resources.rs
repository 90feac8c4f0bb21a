//! Top-level volumes, secrets, configs and models.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::common::{Extensions, External, de_labels, de_options};
use super::network::{external_is_false, ser_external};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Volume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_options",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub driver_opts: IndexMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "external_is_false",
        serialize_with = "ser_external"
    )]
    pub external: External,
    #[serde(
        default,
        deserialize_with = "de_labels",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub labels: IndexMap<String, String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A top-level secret or config: its value comes from a file, an environment variable,
/// inline `content` (configs only), or it is `external`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FileObject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "external_is_false",
        serialize_with = "ser_external"
    )]
    pub external: External,
    #[serde(
        default,
        deserialize_with = "de_labels",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub labels: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_options",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub driver_opts: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_driver: Option<String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

pub type Secret = FileObject;
pub type Config = FileObject;

/// A top-level AI model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Model {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_flags: Vec<String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A service's use of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ServiceModel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_var: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_var: Option<String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}
