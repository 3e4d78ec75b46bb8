//! The YAML visitors behind [`super::Recipe::parse`].
//!
//! Hand-written visitors rather than derived/untagged types, for three
//! reasons: shapes are told apart by YAML node kind (string/list/mapping)
//! without buffering, which would turn `1.10` into the number 1.1; scalar
//! values we keep as text are read with `deserialize_str`, which yields the
//! text as written; and repeated keys are accepted (last wins) with a
//! warning. Errors raised inside a visitor get the node's key path and line
//! from serde_yaml_ng.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde_yaml_ng::value::{Tag, TaggedValue};
use serde_yaml_ng::{Mapping, Value};

use super::yaml_env::{DependenciesSeed, EnvironmentsSeed};
use super::{Build, BuildCommand, BuildTarget, Dependencies, Environment, BUILD_FIELDS};

pub(super) type Warnings<'w> = &'w RefCell<Vec<String>>;

pub(super) fn warn_repeated(warnings: Warnings<'_>, path: &str) {
    warnings
        .borrow_mut()
        .push(format!("repeated key `{path}`: the later value is used"));
}

pub(super) fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

pub(super) fn key_label(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "~".to_owned(),
        _ => "<complex key>".to_owned(),
    }
}

/// An empty or null scalar, as `deserialize_str` reports it.
pub(super) fn is_null_text(text: &str) -> bool {
    matches!(text.trim(), "" | "~" | "null" | "Null" | "NULL")
}

/// Checks an `artifacts` entry: a relative path (glob) inside the source tree.
fn check_artifact(path: &str) -> Result<String, String> {
    let path = path.trim();
    if is_null_text(path) {
        return Err("empty entry".to_owned());
    }
    if path.starts_with('/') || path.split('/').any(|part| part == "..") {
        return Err(format!(
            "`{path}` must be a relative path inside the source tree"
        ));
    }
    Ok(path.to_owned())
}

fn check_artifact_list(paths: Vec<String>) -> Result<Option<Vec<String>>, String> {
    if paths.is_empty() {
        return Err("empty list; omit `artifacts` to package the whole source tree".to_owned());
    }
    paths
        .iter()
        .map(|p| check_artifact(p))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

pub(super) fn check_environment_name(name: &str) -> Result<String, String> {
    let name = name.trim().to_ascii_lowercase();
    if is_null_text(&name) {
        return Err("empty environment name".to_owned());
    }
    Ok(name)
}

/// Any YAML value, with repeated keys accepted (last wins, warned).
pub(super) struct AnyValue<'w> {
    pub(super) warnings: Warnings<'w>,
    pub(super) path: String,
}

impl<'de> DeserializeSeed<'de> for AnyValue<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnyValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(AnyValue {
            warnings: self.warnings,
            path: format!("{}[{}]", self.path, items.len()),
        })? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut mapping = Mapping::new();
        while let Some(key) = map.next_key_seed(AnyValue {
            warnings: self.warnings,
            path: self.path.clone(),
        })? {
            let path = join_path(&self.path, &key_label(&key));
            let value = map.next_value_seed(AnyValue {
                warnings: self.warnings,
                path: path.clone(),
            })?;
            if mapping.insert(key, value).is_some() {
                warn_repeated(self.warnings, &path);
            }
        }
        Ok(Value::Mapping(mapping))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        use serde::de::VariantAccess;
        let (tag, contents): (String, _) = data.variant()?;
        if tag.is_empty() {
            return Err(de::Error::custom("empty YAML tag is not allowed"));
        }
        let value = contents.newtype_variant_seed(self)?;
        Ok(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        })))
    }
}

/// A scalar's text exactly as written (`1.10` stays `"1.10"`).
pub(super) struct ScalarText;

impl<'de> DeserializeSeed<'de> for ScalarText {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for ScalarText {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}

/// Top-level keys, before the cross-checks of [`Recipe::parse`].
#[derive(Default)]
pub(super) struct ParsedRecipe {
    pub(super) image: Option<String>,
    pub(super) build: Option<Build>,
    pub(super) environments: Option<Vec<Environment>>,
    pub(super) dependencies: Option<Dependencies>,
    pub(super) artifacts: Option<Vec<String>>,
    pub(super) extra: Mapping,
}

pub(super) struct RecipeSeed<'w> {
    pub(super) warnings: Warnings<'w>,
}

impl<'de> DeserializeSeed<'de> for RecipeSeed<'_> {
    type Value = ParsedRecipe;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ParsedRecipe, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecipeSeed<'_> {
    type Value = ParsedRecipe;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of recipe keys (build, image, environments, dependencies, ...)")
    }
    fn visit_unit<E: de::Error>(self) -> Result<ParsedRecipe, E> {
        Ok(ParsedRecipe::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<ParsedRecipe, E> {
        Ok(ParsedRecipe::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ParsedRecipe, A::Error> {
        let warnings = self.warnings;
        let mut parsed = ParsedRecipe::default();
        let mut seen: Vec<&'static str> = Vec::new();
        while let Some(key) = map.next_key_seed(AnyValue {
            warnings,
            path: String::new(),
        })? {
            let known = match &key {
                Value::String(name) => [
                    "build",
                    "image",
                    "environments",
                    "dependencies",
                    "artifacts",
                ]
                .into_iter()
                .find(|known| known == name),
                _ => None,
            };
            if let Some(name) = known {
                if seen.contains(&name) {
                    warn_repeated(warnings, name);
                }
                seen.push(name);
            }
            match known {
                Some("build") => parsed.build = map.next_value_seed(BuildSeed { warnings })?,
                Some("image") => parsed.image = map.next_value_seed(OptionalText)?,
                Some("environments") => {
                    parsed.environments = map.next_value_seed(EnvironmentsSeed { warnings })?
                }
                Some("dependencies") => {
                    parsed.dependencies = map.next_value_seed(DependenciesSeed { warnings })?
                }
                Some("artifacts") => parsed.artifacts = map.next_value_seed(ArtifactsSeed)?,
                _ => {
                    let path = key_label(&key);
                    let value = map.next_value_seed(AnyValue {
                        warnings,
                        path: path.clone(),
                    })?;
                    if parsed.extra.insert(key, value).is_some() {
                        warn_repeated(warnings, &path);
                    }
                }
            }
        }
        Ok(parsed)
    }
}

/// `image:`: a string, or nothing.
struct OptionalText;

impl<'de> DeserializeSeed<'de> for OptionalText {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Visitor<'_> for OptionalText {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let v = v.trim();
        Ok((!v.is_empty()).then(|| v.to_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// `artifacts:`: a list of paths, or one path.
struct ArtifactsSeed;

impl<'de> DeserializeSeed<'de> for ArtifactsSeed {
    type Value = Option<Vec<String>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ArtifactsSeed {
    type Value = Option<Vec<String>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of paths")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        check_artifact(v).map(|p| Some(vec![p])).map_err(E::custom)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut paths = Vec::new();
        while let Some(path) = seq.next_element_seed(ScalarText)? {
            paths.push(path);
        }
        check_artifact_list(paths).map_err(de::Error::custom)
    }
}

/// `build:`: a command string, `{command, image, artifacts}`, or named targets.
struct BuildSeed<'w> {
    warnings: Warnings<'w>,
}

impl<'de> DeserializeSeed<'de> for BuildSeed<'_> {
    type Value = Option<Build>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BuildSeed<'_> {
    type Value = Option<Build>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a build command, a script name, or a mapping")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.trim().is_empty() {
            return Err(E::custom("empty build command"));
        }
        Ok(Some(Build::Common(BuildTarget {
            command: Some(BuildCommand::new(v)),
            ..BuildTarget::default()
        })))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries: Vec<(String, Value)> = Vec::new();
        while let Some(key) = map.next_key_seed(AnyValue {
            warnings: self.warnings,
            path: "build".to_owned(),
        })? {
            let Value::String(key) = key else {
                return Err(de::Error::custom(format!(
                    "key `{}` is not a string",
                    key_label(&key)
                )));
            };
            let path = join_path("build", &key);
            let value = map.next_value_seed(AnyValue {
                warnings: self.warnings,
                path: path.clone(),
            })?;
            match entries
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(&key))
            {
                Some(entry) => {
                    warn_repeated(self.warnings, &path);
                    *entry = (key, value);
                }
                None => entries.push((key, value)),
            }
        }
        if entries.is_empty() {
            return Ok(None);
        }
        let build = if entries
            .iter()
            .any(|(key, _)| BUILD_FIELDS.contains(&key.as_str()))
        {
            Build::Common(target_from_entries("", entries, self.warnings)?)
        } else {
            let mut targets = Vec::with_capacity(entries.len());
            for (name, mut value) in entries {
                // Messages raised here are prefixed with `build: ` by serde_yaml_ng.
                let path = name.clone();
                // `<<: *defaults` in a target: merge, as YAML 1.1 tools (PyYAML) do.
                value
                    .apply_merge()
                    .map_err(|e| de::Error::custom(format!("{path}: {e}")))?;
                let target = match value {
                    Value::Mapping(mapping) => {
                        let mut fields = Vec::with_capacity(mapping.len());
                        for (key, value) in mapping {
                            match key {
                                Value::String(key) => fields.push((key, value)),
                                other => {
                                    return Err(de::Error::custom(format!(
                                        "{path}: key `{}` is not a string",
                                        key_label(&other)
                                    )))
                                }
                            }
                        }
                        target_from_entries(&path, fields, self.warnings)?
                    }
                    Value::Null => BuildTarget::default(),
                    other => BuildTarget {
                        command: Some(
                            command_from_value(&path, &other).map_err(de::Error::custom)?,
                        ),
                        ..BuildTarget::default()
                    },
                };
                targets.push((name, target));
            }
            Build::Targets(targets)
        };
        Ok(Some(build))
    }
}

fn command_from_value(path: &str, value: &Value) -> Result<BuildCommand, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(format!("{path}: expected a command string")),
    };
    if text.trim().is_empty() {
        return Err(format!("{path}: empty build command"));
    }
    Ok(BuildCommand::new(&text))
}

/// `path`: the target's name, or empty for the single-command form (messages are relative to
/// `build`, which serde_yaml_ng prefixes).
fn target_from_entries<E: de::Error>(
    path: &str,
    entries: Vec<(String, Value)>,
    warnings: Warnings<'_>,
) -> Result<BuildTarget, E> {
    let mut target = BuildTarget::default();
    for (key, value) in entries {
        let key_path = join_path(path, &key);
        match key.as_str() {
            "command" => {
                target.command = match value {
                    Value::Null => None,
                    value => Some(command_from_value(&key_path, &value).map_err(E::custom)?),
                }
            }
            "image" => {
                target.image = match value {
                    Value::Null => None,
                    Value::String(s) if s.trim().is_empty() => None,
                    Value::String(s) => Some(s.trim().to_owned()),
                    _ => return Err(E::custom(format!("{key_path}: expected an image name"))),
                }
            }
            "artifacts" => {
                target.artifacts = match value {
                    Value::Null => None,
                    Value::Sequence(items) => {
                        let mut paths = Vec::with_capacity(items.len());
                        for item in items {
                            paths.push(match item {
                                Value::String(s) => s,
                                Value::Number(n) => n.to_string(),
                                _ => {
                                    return Err(E::custom(format!(
                                        "{key_path}: expected a list of paths"
                                    )))
                                }
                            });
                        }
                        check_artifact_list(paths)
                            .map_err(|e| E::custom(format!("{key_path}: {e}")))?
                    }
                    Value::String(s) => {
                        Some(vec![check_artifact(&s)
                            .map_err(|e| E::custom(format!("{key_path}: {e}")))?])
                    }
                    _ => return Err(E::custom(format!("{key_path}: expected a list of paths"))),
                }
            }
            _ => {
                if key == "matrix" {
                    warnings.borrow_mut().push(format!(
                        "`build.{key_path}` is not supported: the command runs once, without \
                         the matrix variables"
                    ));
                }
                target.extra.insert(Value::String(key), value);
            }
        }
    }
    Ok(target)
}
