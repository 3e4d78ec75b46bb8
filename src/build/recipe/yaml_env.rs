//! The visitors of `environments:` and `dependencies:` (list or
//! per-environment mapping, single-key `- name: tag` items).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_yaml_ng::Mapping;

use super::yaml::{
    check_environment_name, is_null_text, join_path, key_label, warn_repeated, AnyValue,
    ScalarText, Warnings,
};
use super::{Dependencies, Dependency, Environment};

/// `environments:`: a list of names, or a mapping name -> `{dependencies: [...]}`.
pub(super) struct EnvironmentsSeed<'w> {
    pub(super) warnings: Warnings<'w>,
}

impl<'de> DeserializeSeed<'de> for EnvironmentsSeed<'_> {
    type Value = Option<Vec<Environment>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

const EMPTY_ENVIRONMENTS: &str =
    "empty list; omit `environments` to allow building for every environment";

impl<'de> Visitor<'de> for EnvironmentsSeed<'_> {
    type Value = Option<Vec<Environment>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of environment names, or a mapping of environments")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let name = check_environment_name(v).map_err(E::custom)?;
        Ok(Some(vec![Environment {
            name,
            dependencies: None,
        }]))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut environments: Vec<Environment> = Vec::new();
        while let Some(name) = seq.next_element_seed(ScalarText)? {
            let name = check_environment_name(&name).map_err(de::Error::custom)?;
            if !environments.iter().any(|e| e.name == name) {
                environments.push(Environment {
                    name,
                    dependencies: None,
                });
            }
        }
        if environments.is_empty() {
            return Err(de::Error::custom(EMPTY_ENVIRONMENTS));
        }
        Ok(Some(environments))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut environments: Vec<Environment> = Vec::new();
        while let Some(name) = map.next_key_seed(ScalarText)? {
            let name = check_environment_name(&name).map_err(de::Error::custom)?;
            let path = join_path("environments", &name);
            let dependencies = map.next_value_seed(EnvironmentSeed {
                warnings: self.warnings,
                path: path.clone(),
            })?;
            let environment = Environment { name, dependencies };
            match environments.iter_mut().find(|e| e.name == environment.name) {
                Some(existing) => {
                    warn_repeated(self.warnings, &path);
                    *existing = environment;
                }
                None => environments.push(environment),
            }
        }
        if environments.is_empty() {
            return Err(de::Error::custom(EMPTY_ENVIRONMENTS));
        }
        Ok(Some(environments))
    }
}

/// One environment's settings in format 2: `{dependencies: [...]}` (other keys ignored), a bare
/// dependency list, or nothing.
struct EnvironmentSeed<'w> {
    warnings: Warnings<'w>,
    path: String,
}

impl<'de> DeserializeSeed<'de> for EnvironmentSeed<'_> {
    type Value = Option<Vec<Dependency>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EnvironmentSeed<'_> {
    type Value = Option<Vec<Dependency>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with `dependencies`, or nothing")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        dependency_items(seq).map(Some)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut dependencies = None;
        // Other keys are read (so repeats are warned about) and dropped.
        let mut extra = Mapping::new();
        while let Some(key) = map.next_key_seed(AnyValue {
            warnings: self.warnings,
            path: self.path.clone(),
        })? {
            let path = join_path(&self.path, &key_label(&key));
            if key.as_str() == Some("dependencies") {
                if dependencies.is_some() {
                    warn_repeated(self.warnings, &path);
                }
                dependencies = Some(map.next_value_seed(DependencyListSeed)?);
            } else {
                let value = map.next_value_seed(AnyValue {
                    warnings: self.warnings,
                    path: path.clone(),
                })?;
                if extra.insert(key, value).is_some() {
                    warn_repeated(self.warnings, &path);
                }
            }
        }
        Ok(dependencies)
    }
}

/// `dependencies:`: a list of `- name: tag`, or a mapping environment -> such a list.
pub(super) struct DependenciesSeed<'w> {
    pub(super) warnings: Warnings<'w>,
}

impl<'de> DeserializeSeed<'de> for DependenciesSeed<'_> {
    type Value = Option<Dependencies>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DependenciesSeed<'_> {
    type Value = Option<Dependencies>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of `- name: tag` entries, or a mapping of environment to such a list")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        dependency_items(seq).map(|deps| Some(Dependencies::Common(deps)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut per_env: Vec<(String, Vec<Dependency>)> = Vec::new();
        while let Some(name) = map.next_key_seed(ScalarText)? {
            let name = check_environment_name(&name).map_err(de::Error::custom)?;
            let deps = map.next_value_seed(DependencyListSeed)?;
            match per_env.iter_mut().find(|(n, _)| *n == name) {
                Some(existing) => {
                    warn_repeated(self.warnings, &join_path("dependencies", &name));
                    existing.1 = deps;
                }
                None => per_env.push((name, deps)),
            }
        }
        Ok(Some(Dependencies::PerEnvironment(per_env)))
    }
}

/// A list of `- name: tag` entries (nothing: an empty list).
struct DependencyListSeed;

impl<'de> DeserializeSeed<'de> for DependencyListSeed {
    type Value = Vec<Dependency>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DependencyListSeed {
    type Value = Vec<Dependency>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of `- name: tag` entries")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        dependency_items(seq)
    }
}

fn dependency_items<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Vec<Dependency>, A::Error> {
    let mut deps = Vec::new();
    while let Some(item) = seq.next_element_seed(DependencyItem)? {
        deps.extend(item);
    }
    Ok(deps)
}

/// One list entry `- name: tag` (several keys in one entry give several dependencies).
struct DependencyItem;

impl<'de> DeserializeSeed<'de> for DependencyItem {
    type Value = Vec<Dependency>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DependencyItem {
    type Value = Vec<Dependency>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a `- name: tag` entry")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "dependency `{0}` has no tag; write `- {0}: <tag>`",
            v.trim()
        )))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut deps = Vec::new();
        while let Some(name) = map.next_key_seed(ScalarText)? {
            let tag = map.next_value_seed(ScalarText)?;
            let name = name.trim().to_owned();
            if is_null_text(&name) {
                return Err(de::Error::custom("dependency with an empty name"));
            }
            if is_null_text(&tag) {
                return Err(de::Error::custom(format!(
                    "dependency `{name}` has no tag; write `- {name}: <tag>`"
                )));
            }
            deps.push(Dependency {
                name,
                tag: tag.trim().to_owned(),
            });
        }
        Ok(deps)
    }
}
