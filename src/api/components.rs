//! Component answers: a record with its links, lists, the missing-check.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::OkStatus;
use crate::model::{ComponentKey, Record};

/// A component record as answered, with its links.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ComponentRecord {
    #[serde(flatten)]
    pub record: Record,
    /// `/v1/components/{component}/{tag}/{arch}`
    pub path: String,
    /// The download (`public_url`, or this request's host, plus `path`).
    pub download_url: String,
    /// The blob by content: never changes.
    pub blob_url: String,
    /// The record.
    pub info_url: String,
}

impl ComponentRecord {
    /// The record with links under `base` (e.g. `http://host:8080`).
    pub fn new(record: Record, base: &str) -> Self {
        let path = format!(
            "/v1/components/{}/{}/{}",
            record.component, record.tag, record.arch
        );
        Self {
            download_url: format!("{base}{path}"),
            blob_url: format!("{base}/v1/blobs/{}", record.blake3),
            info_url: format!("{base}{path}/info"),
            path,
            record,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ComponentStatus {
    Found,
    Created,
    Unchanged,
}

/// One component: `found` (a lookup), `created` (201) or `unchanged` (200:
/// the same content was already stored).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ComponentAnswer {
    #[schema(inline)]
    pub status: ComponentStatus,
    pub component: ComponentRecord,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeletedStatus {
    Deleted,
}

/// The index entry that was dropped (its blob stays until garbage collection).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletedAnswer {
    #[schema(inline)]
    pub status: DeletedStatus,
    pub component: Record,
}

/// A page of components (records: one per component, tag and arch),
/// ordered by component/tag/arch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ComponentList {
    #[schema(inline)]
    pub status: OkStatus,
    pub components: Vec<ComponentRecord>,
    /// When the page is full: pass it as `after` for the next page.
    pub next: Option<String>,
    /// With `count=true`: how many match in all, over every page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<ListCount>,
}

/// How many records, and how many distinct components, match a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListCount {
    /// Records: (component, tag, arch) entries.
    pub records: u64,
    /// Distinct component names among them.
    pub components: u64,
}

/// Every tag and architecture of one component.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ComponentVersions {
    #[schema(inline)]
    pub status: OkStatus,
    pub component: String,
    pub versions: Vec<ComponentRecord>,
}

/// One component asked about.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WantedItem {
    pub component: String,
    pub tag: String,
    /// The architecture (alias `architecture`); absent: the configured `default_arch`.
    #[serde(
        alias = "architecture",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub arch: Option<String>,
    /// The inputs key the client would build it from: when it is missing,
    /// the answer says whether those inputs were built under another key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
}

/// A missing component whose inputs were built before, under another key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SameInputs {
    pub component: String,
    pub tag: String,
    pub arch: String,
    pub inputs: String,
    /// The record built from these inputs.
    pub built_as: ComponentRecord,
}

/// The components to check: a list, or `{"components": [...]}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MissingRequest {
    List(Vec<WantedItem>),
    Object { components: Vec<WantedItem> },
}

/// Read by hand rather than as an untagged enum, so that what is wrong
/// inside an item (a missing `tag`, a number for a name) is said as such,
/// not as "no variant matched".
impl<'de> Deserialize<'de> for MissingRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, SeqAccess, Visitor};
        struct Shape;
        impl<'de> Visitor<'de> for Shape {
            type Value = MissingRequest;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "an object {\"components\": [{\"component\", \"tag\", \"arch\"}, ...]} \
                     (or the list alone)",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<WantedItem>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(MissingRequest::List)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut components = None;
                while let Some(k) = map.next_key::<String>()? {
                    if k != "components" {
                        map.next_value::<de::IgnoredAny>()?;
                    } else if components.is_some() {
                        return Err(de::Error::duplicate_field("components"));
                    } else {
                        components = Some(map.next_value::<Vec<WantedItem>>()?);
                    }
                }
                components
                    .map(|components| MissingRequest::Object { components })
                    .ok_or_else(|| de::Error::missing_field("components"))
            }
        }
        d.deserialize_any(Shape)
    }
}

impl MissingRequest {
    pub fn items(&self) -> &[WantedItem] {
        match self {
            MissingRequest::List(v) => v,
            MissingRequest::Object { components } => components,
        }
    }
}

/// Which of the asked components are not stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MissingAnswer {
    #[schema(inline)]
    pub status: OkStatus,
    /// How many were asked about.
    pub checked: usize,
    pub missing: Vec<ComponentKey>,
    /// Missing ones sent with `inputs` that were built under another key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub same_inputs: Vec<SameInputs>,
}
