//! Build recipes of component repositories: what to run to build a component for one environment.
//!
//! This module owns reading a repository's recipe (`config.yaml` at the root, else
//! `configure/CONFIG.yaml`), detecting a build when the recipe gives none, and turning a recipe
//! into the [`BuildPlan`] for one environment (command, builder image, dependencies, artifacts).
//! It runs nothing: executing the plan is the builder's job.
//!
//! # Shapes accepted
//!
//! The lab's recipes come in several shapes (copies in `fixtures/recipes`):
//! - `build: make` or `build: build.sh`: one command for every environment. A bare script name
//!   (ends with `.sh`, no whitespace or shell metacharacters) becomes `sh ./build.sh`; anything
//!   else is a shell command used as written. Commands may `source` files, so the builder should
//!   run the final string with `bash -c` where bash exists.
//! - `build: {command: ..., image: ..., artifacts: [...]}`: the same, with optional overrides.
//!   Any of `command`, `image` or `artifacts` makes the mapping this form.
//! - `build: {<name>: {command, image, artifacts, ...}, ...}`: named targets. The target whose
//!   name equals the environment (case-insensitive) applies, so `{rhel7: ..., rocky9: ...}` is a
//!   per-environment build. Firmware recipes name targets after what they build (`prc`,
//!   `resonance_control`, with a `matrix`); they parse, but no environment has a plan, and
//!   [`Recipe::plan`] says which targets exist. A target may also be a bare command string.
//!   `matrix` expansion is not modelled (kept in [`BuildTarget::extra`], with a warning).
//! - `image:` the default builder image; a target's `image` wins over it.
//! - `environments:` a list of names (any case, stored lower case), or ("format 2") a mapping
//!   `{rocky9: {dependencies: [...]}, ...}` whose values may hold per-environment dependencies.
//! - `dependencies:` a list of single-key mappings `- epics-base: R7.0.8`, or a mapping
//!   `{rocky9: [...], rhel7: [...]}` per environment. Tags keep the text the user wrote: `1.10`
//!   stays `"1.10"` (not the number 1.1).
//! - `artifacts:` a list of paths (or globs) inside the source tree; absent means the whole tree
//!   minus `.git`.
//! - Every other key (`deploy`, `test`, `approvalRule`, `variables`, `python`, `format`, ...)
//!   is kept in [`Recipe::extra`] and otherwise ignored.
//!
//! # Duplicate keys
//!
//! Strict YAML forbids repeated keys in a mapping, and `serde_yaml_ng` rejects them. The lab's
//! tooling reads recipes with PyYAML, where the later value silently wins, and real files rely on
//! that (`other/CONFIG_structure.yaml` repeats every key to show format 1 and format 2). So a
//! repeated key is accepted, the later value wins, and [`Recipe::warnings`] names each repeated key
//! so the caller can log it.
//!
//! # `parse` versus `from_dir`
//!
//! [`Recipe::parse`] reads text only: a recipe without `build:` has no command, and its plans fail
//! with [`RecipeError::NoBuildCommand`]. [`Recipe::from_dir`] also looks at the source tree: when
//! the recipe has no `build:` (or there is no recipe file) it detects `build.sh`, a `configure`
//! script, `CMakeLists.txt` or a Makefile, in that order.

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_yaml_ng::value::{Tag, TaggedValue};
use serde_yaml_ng::{Mapping, Value};
use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a repository's recipe may live, in order of preference (relative to the repo root).
pub const RECIPE_FILES: [&str; 2] = ["config.yaml", "configure/CONFIG.yaml"];

/// Files that [`Recipe::from_dir`] detects a build from, in order of preference, with the
/// command each implies.
pub const DETECTED_BUILDS: [(&str, &str); 6] = [
    ("build.sh", "build.sh"),
    ("configure", "./configure && make"),
    (
        "CMakeLists.txt",
        "cmake -S . -B build && cmake --build build",
    ),
    ("Makefile", "make"),
    ("makefile", "make"),
    ("GNUmakefile", "make"),
];

/// A recipe file larger than this is refused rather than read into memory.
pub const MAX_RECIPE_BYTES: u64 = 1024 * 1024;

/// Keys of a `build:` mapping that make it the single-command form rather than named targets.
const BUILD_FIELDS: [&str; 3] = ["command", "image", "artifacts"];

/// What can go wrong reading a recipe or planning a build. Every message names the recipe.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The text is not YAML, or a key has the wrong shape. The message has the key path and line.
    #[error("{file}: {error}")]
    Parse {
        file: String,
        #[source]
        error: serde_yaml_ng::Error,
    },
    /// The recipe is well-formed YAML but contradicts itself or cannot be used.
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    /// A recipe file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The source tree has no recipe file and nothing to detect a build from.
    #[error(
        "no build recipe in {}: looked for {} (a recipe) and {} (to detect a build from), \
         found none",
        dir.display(),
        RECIPE_FILES.join(", "),
        detected_build_files()
    )]
    NoRecipe { dir: PathBuf },
    /// The environment asked for is not a usable name.
    #[error(
        "{file}: invalid environment name {arch:?} (expected letters, digits, `.`, `_` or `-`)"
    )]
    InvalidEnvironment { file: String, arch: String },
    /// The recipe lists its environments and this is not one of them.
    #[error(
        "{file}: environment `{arch}` is not one of the recipe's environments ({})",
        allowed.join(", ")
    )]
    EnvironmentNotListed {
        file: String,
        arch: String,
        allowed: Vec<String>,
    },
    /// No build command applies to this environment.
    #[error("{file}: no build command for environment `{arch}`: {reason}")]
    NoBuildCommand {
        file: String,
        arch: String,
        reason: String,
    },
}

fn detected_build_files() -> String {
    DETECTED_BUILDS
        .iter()
        .map(|(file, _)| *file)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A component the build needs, at a tag (`- epics-base: R7.0.8`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Dependency {
    pub name: String,
    pub tag: String,
}

/// A build command as the recipe wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildCommand {
    /// The text, trimmed.
    pub text: String,
    /// The text is a script file name (ends with `.sh`; no whitespace or shell metacharacters),
    /// run as `sh ./<name>` rather than as a command.
    pub is_script: bool,
}

impl BuildCommand {
    pub fn new(text: &str) -> Self {
        let text = text.trim().to_owned();
        let is_script = text.len() > ".sh".len()
            && text.ends_with(".sh")
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '+'));
        BuildCommand { text, is_script }
    }

    /// The shell string to run in the source directory.
    pub fn shell_command(&self) -> String {
        if !self.is_script {
            self.text.clone()
        } else if self.text.starts_with('/')
            || self.text.starts_with("./")
            || self.text.starts_with("../")
        {
            format!("sh {}", self.text)
        } else {
            format!("sh ./{}", self.text)
        }
    }
}

/// One way of building: the whole `build:` in its single-command forms, or one named target.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BuildTarget {
    pub command: Option<BuildCommand>,
    /// Builder image; wins over the recipe's top-level `image`.
    pub image: Option<String>,
    /// Wins over the recipe's top-level `artifacts`.
    pub artifacts: Option<Vec<String>>,
    /// Keys this module does not use (`matrix`, ...).
    pub extra: Mapping,
}

/// The recipe's `build:`.
#[derive(Debug, Clone, PartialEq)]
pub enum Build {
    /// `build: make`, `build: build.sh`, `build: {command: ...}`: for every environment.
    Common(BuildTarget),
    /// `build: {<name>: {...}, ...}` in file order: the target named like the environment applies.
    Targets(Vec<(String, BuildTarget)>),
}

/// Where the recipe's build command came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildOrigin {
    /// The recipe's `build:`.
    Recipe,
    /// Detected by [`Recipe::from_dir`] from this file in the source tree.
    Detected { file: String },
    /// There is none; `detection_tried` says whether the source tree was looked at.
    Absent { detection_tried: bool },
}

/// An environment the recipe lists (`environments:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// Lower case.
    pub name: String,
    /// Format 2 (`environments: {rocky9: {dependencies: [...]}}`): this environment's own list.
    pub dependencies: Option<Vec<Dependency>>,
}

/// The recipe's top-level `dependencies:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dependencies {
    /// A list for every environment.
    Common(Vec<Dependency>),
    /// `{rocky9: [...], ...}`: names lower case, in file order.
    PerEnvironment(Vec<(String, Vec<Dependency>)>),
}

/// A parsed build recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// The file (or directory, for a detected build) this came from; used in messages.
    pub source_name: String,
    /// Default builder image (top-level `image:`).
    pub image: Option<String>,
    pub build: Option<Build>,
    pub build_origin: BuildOrigin,
    /// `None`: any environment may be built.
    pub environments: Option<Vec<Environment>>,
    pub dependencies: Option<Dependencies>,
    /// `None`: the whole source tree minus `.git`.
    pub artifacts: Option<Vec<String>>,
    /// Top-level keys this module does not use.
    pub extra: Mapping,
    /// Things worth logging that did not stop parsing (repeated keys, ignored settings).
    pub warnings: Vec<String>,
}

/// What to do to build a component for one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildPlan {
    /// Lower case.
    pub arch: String,
    /// The shell string to run in the source directory (scripts as `sh ./build.sh`).
    pub command: String,
    /// Builder image: the target's, else the recipe's top-level one.
    pub image: Option<String>,
    /// This environment's own list, else the recipe's common list.
    pub dependencies: Vec<Dependency>,
    /// `None`: the whole source tree minus `.git`.
    pub artifacts: Option<Vec<String>>,
}

impl Recipe {
    /// Parses recipe text. `source_name` names it in messages (usually the file's path).
    pub fn parse(text: &str, source_name: &str) -> Result<Recipe, RecipeError> {
        let warnings = RefCell::new(Vec::new());
        let parsed = RecipeSeed {
            warnings: &warnings,
        }
        .deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .map_err(|error| RecipeError::Parse {
            file: source_name.to_owned(),
            error,
        })?;

        if let (Some(environments), Some(Dependencies::PerEnvironment(per_env))) =
            (&parsed.environments, &parsed.dependencies)
        {
            for env in environments.iter().filter(|e| e.dependencies.is_some()) {
                if per_env.iter().any(|(name, _)| *name == env.name) {
                    return Err(RecipeError::Invalid {
                        file: source_name.to_owned(),
                        message: format!(
                            "dependencies for `{}` are given both under `environments` and under \
                             `dependencies`; keep one",
                            env.name
                        ),
                    });
                }
            }
        }

        let build_origin = if parsed.build.is_some() {
            BuildOrigin::Recipe
        } else {
            BuildOrigin::Absent {
                detection_tried: false,
            }
        };
        Ok(Recipe {
            source_name: source_name.to_owned(),
            image: parsed.image,
            build: parsed.build,
            build_origin,
            environments: parsed.environments,
            dependencies: parsed.dependencies,
            artifacts: parsed.artifacts,
            extra: parsed.extra,
            warnings: warnings.into_inner(),
        })
    }

    /// Reads the recipe of the source tree at `dir`: `config.yaml` at the root, else
    /// `configure/CONFIG.yaml`. When there is no recipe file, or it has no `build:`, detects the
    /// build from the tree (first found wins): `build.sh` -> `sh ./build.sh`, a `configure` file
    /// -> `./configure && make`, `CMakeLists.txt` -> `cmake -S . -B build && cmake --build build`,
    /// `Makefile`/`makefile`/`GNUmakefile` -> `make`. With no recipe file and nothing detected:
    /// [`RecipeError::NoRecipe`]. A recipe file without `build:` and nothing detected still parses;
    /// its plans fail with [`RecipeError::NoBuildCommand`].
    pub fn from_dir(dir: &Path) -> Result<Recipe, RecipeError> {
        for relative in RECIPE_FILES {
            let path = dir.join(relative);
            if !path.is_file() {
                continue;
            }
            let text = read_recipe_file(dir, &path)?;
            let mut recipe = Recipe::parse(&text, &path.display().to_string())?;
            if recipe.build.is_none() {
                match detect_build(dir) {
                    Some((file, command)) => {
                        recipe.build = Some(Build::Common(BuildTarget {
                            command: Some(command),
                            ..BuildTarget::default()
                        }));
                        recipe.build_origin = BuildOrigin::Detected {
                            file: file.to_owned(),
                        };
                    }
                    None => {
                        recipe.build_origin = BuildOrigin::Absent {
                            detection_tried: true,
                        }
                    }
                }
            }
            return Ok(recipe);
        }
        match detect_build(dir) {
            Some((file, command)) => Ok(Recipe {
                source_name: dir.display().to_string(),
                image: None,
                build: Some(Build::Common(BuildTarget {
                    command: Some(command),
                    ..BuildTarget::default()
                })),
                build_origin: BuildOrigin::Detected {
                    file: file.to_owned(),
                },
                environments: None,
                dependencies: None,
                artifacts: None,
                extra: Mapping::new(),
                warnings: Vec::new(),
            }),
            None => Err(RecipeError::NoRecipe {
                dir: dir.to_path_buf(),
            }),
        }
    }

    /// The environments the recipe lists (lower case), if it lists any.
    pub fn environment_names(&self) -> Option<Vec<String>> {
        self.environments
            .as_ref()
            .map(|envs| envs.iter().map(|e| e.name.clone()).collect())
    }

    /// The plan for one environment (`arch`, case-insensitive). Fails clearly when
    /// `environments` is given and does not list it, or when no build command applies.
    pub fn plan(&self, arch: &str) -> Result<BuildPlan, RecipeError> {
        let arch = arch.trim().to_ascii_lowercase();
        if arch.is_empty()
            || !arch
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(RecipeError::InvalidEnvironment {
                file: self.source_name.clone(),
                arch,
            });
        }
        if let Some(allowed) = self.environment_names() {
            if !allowed.contains(&arch) {
                return Err(RecipeError::EnvironmentNotListed {
                    file: self.source_name.clone(),
                    arch,
                    allowed,
                });
            }
        }

        let no_command = |reason: String| RecipeError::NoBuildCommand {
            file: self.source_name.clone(),
            arch: arch.clone(),
            reason,
        };
        let (target, command) = match &self.build {
            None => {
                let reason = match self.build_origin {
                    BuildOrigin::Absent {
                        detection_tried: true,
                    } => format!(
                        "the recipe has no `build:` and the source tree has none of {}",
                        detected_build_files()
                    ),
                    _ => format!(
                        "the recipe has no `build:` (Recipe::parse reads the text only; \
                         Recipe::from_dir also detects a build from {})",
                        detected_build_files()
                    ),
                };
                return Err(no_command(reason));
            }
            Some(Build::Common(target)) => match &target.command {
                Some(command) => (target, command),
                None => {
                    return Err(no_command(
                        "the recipe's `build:` has no `command`".to_owned(),
                    ))
                }
            },
            Some(Build::Targets(targets)) => {
                let Some((name, target)) = targets
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(&arch))
                else {
                    let names: Vec<&str> = targets.iter().map(|(name, _)| name.as_str()).collect();
                    return Err(no_command(if names.is_empty() {
                        "the recipe's `build:` is empty".to_owned()
                    } else {
                        format!(
                            "the recipe has build targets {} but none for environment {arch}",
                            names.join(", ")
                        )
                    }));
                };
                match &target.command {
                    Some(command) => (target, command),
                    None => {
                        return Err(no_command(format!(
                            "build target `{name}` has no `command`"
                        )))
                    }
                }
            }
        };

        let own_dependencies = self
            .environments
            .iter()
            .flatten()
            .find(|env| env.name == arch)
            .and_then(|env| env.dependencies.clone())
            .or_else(|| match &self.dependencies {
                Some(Dependencies::PerEnvironment(per_env)) => per_env
                    .iter()
                    .find(|(name, _)| *name == arch)
                    .map(|(_, deps)| deps.clone()),
                _ => None,
            });
        let dependencies = own_dependencies
            .or_else(|| match &self.dependencies {
                Some(Dependencies::Common(deps)) => Some(deps.clone()),
                _ => None,
            })
            .unwrap_or_default();

        Ok(BuildPlan {
            command: command.shell_command(),
            image: target.image.clone().or_else(|| self.image.clone()),
            dependencies,
            artifacts: target.artifacts.clone().or_else(|| self.artifacts.clone()),
            arch,
        })
    }
}

/// Reads a recipe file, refusing one that resolves outside the source tree
/// (symlinks followed on the real file system), is not a regular file (a
/// fifo would block the reader), or is too large.
fn read_recipe_file(dir: &Path, path: &Path) -> Result<String, RecipeError> {
    let io_error = |source| RecipeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |message: String| RecipeError::Invalid {
        file: path.display().to_string(),
        message,
    };
    let rel = path.strip_prefix(dir).unwrap_or(path);
    let resolved = crate::store::beneath::resolve(dir, rel, "the source tree")
        .map_err(|e| invalid(e.to_string()))?;
    let real = dir.join(&resolved.rel);
    let meta = std::fs::symlink_metadata(&real).map_err(io_error)?;
    if !meta.is_file() {
        return Err(invalid("is not a regular file".into()));
    }
    if meta.len() > MAX_RECIPE_BYTES {
        return Err(invalid(format!(
            "{} bytes; a recipe may have at most {MAX_RECIPE_BYTES}",
            meta.len()
        )));
    }
    let f = std::fs::File::open(&real).map_err(io_error)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_RECIPE_BYTES + 1), &mut text)
        .map_err(io_error)?;
    Ok(text)
}

/// The first of [`DETECTED_BUILDS`] present as a file in `dir`.
fn detect_build(dir: &Path) -> Option<(&'static str, BuildCommand)> {
    DETECTED_BUILDS
        .iter()
        .find(|(file, _)| dir.join(file).is_file())
        .map(|(file, command)| (*file, BuildCommand::new(command)))
}

// ---------------------------------------------------------------------------------------------
// Deserialization. Hand-written visitors rather than derived/untagged types, for three reasons:
// shapes are told apart by YAML node kind (string/list/mapping) without buffering, which would
// turn `1.10` into the number 1.1; scalar values we keep as text are read with `deserialize_str`,
// which yields the text as written; and repeated keys are accepted (last wins) with a warning.
// Errors raised inside a visitor get the node's key path and line from serde_yaml_ng.
// ---------------------------------------------------------------------------------------------

type Warnings<'w> = &'w RefCell<Vec<String>>;

fn warn_repeated(warnings: Warnings<'_>, path: &str) {
    warnings
        .borrow_mut()
        .push(format!("repeated key `{path}`: the later value is used"));
}

fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn key_label(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "~".to_owned(),
        _ => "<complex key>".to_owned(),
    }
}

/// An empty or null scalar, as `deserialize_str` reports it.
fn is_null_text(text: &str) -> bool {
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

fn check_environment_name(name: &str) -> Result<String, String> {
    let name = name.trim().to_ascii_lowercase();
    if is_null_text(&name) {
        return Err("empty environment name".to_owned());
    }
    Ok(name)
}

/// Any YAML value, with repeated keys accepted (last wins, warned).
struct AnyValue<'w> {
    warnings: Warnings<'w>,
    path: String,
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
struct ScalarText;

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
struct ParsedRecipe {
    image: Option<String>,
    build: Option<Build>,
    environments: Option<Vec<Environment>>,
    dependencies: Option<Dependencies>,
    artifacts: Option<Vec<String>>,
    extra: Mapping,
}

struct RecipeSeed<'w> {
    warnings: Warnings<'w>,
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

/// `environments:`: a list of names, or a mapping name -> `{dependencies: [...]}`.
struct EnvironmentsSeed<'w> {
    warnings: Warnings<'w>,
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
struct DependenciesSeed<'w> {
    warnings: Warnings<'w>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn parse(text: &str) -> Recipe {
        Recipe::parse(text, "test.yaml").unwrap()
    }

    fn dep(name: &str, tag: &str) -> Dependency {
        Dependency {
            name: name.to_owned(),
            tag: tag.to_owned(),
        }
    }

    fn no_command_reason(err: RecipeError) -> String {
        match err {
            RecipeError::NoBuildCommand { reason, .. } => reason,
            other => panic!("expected NoBuildCommand, got {other:?}"),
        }
    }

    // --- build: shapes -----------------------------------------------------------------------

    #[test]
    fn build_plain_command() {
        let recipe = parse("build: make\n");
        let plan = recipe.plan("rocky9").unwrap();
        assert_eq!(plan.command, "make");
        assert_eq!(plan.arch, "rocky9");
        assert_eq!(plan.image, None);
        assert!(plan.dependencies.is_empty());
        assert_eq!(plan.artifacts, None);
        assert_eq!(recipe.build_origin, BuildOrigin::Recipe);
    }

    #[test]
    fn build_script_names_run_with_sh() {
        for (build, expected) in [
            ("build.sh", "sh ./build.sh"),
            ("./build.sh", "sh ./build.sh"),
            ("scripts/build-all.sh", "sh ./scripts/build-all.sh"),
            ("/opt/ci/build.sh", "sh /opt/ci/build.sh"),
            ("make && ./post.sh", "make && ./post.sh"),
            ("bash build.sh", "bash build.sh"),
            ("$HOME/build.sh", "$HOME/build.sh"),
            (".sh", ".sh"),
        ] {
            let recipe = parse(&format!("build: {build:?}\n"));
            assert_eq!(recipe.plan("rocky9").unwrap().command, expected, "{build}");
        }
        let command = BuildCommand::new(" build.sh ");
        assert!(command.is_script);
        assert_eq!(command.text, "build.sh");
        assert!(!BuildCommand::new("make build.sh").is_script);
    }

    #[test]
    fn build_command_mapping_with_source() {
        let recipe = parse(
            "image: ghcr.io/lab/rocky9-env:latest\n\
             build:\n  command: |\n    source /afs/ENVS64.bash &&\n    make\n",
        );
        let plan = recipe.plan("ROCKY9").unwrap();
        assert_eq!(plan.command, "source /afs/ENVS64.bash &&\nmake");
        assert_eq!(plan.image.as_deref(), Some("ghcr.io/lab/rocky9-env:latest"));
        assert!(matches!(recipe.build, Some(Build::Common(_))));
    }

    #[test]
    fn build_command_mapping_overrides_image_and_artifacts() {
        let recipe = parse(
            "image: top\nartifacts: [bin]\n\
             build: {command: make, image: special, artifacts: [lib, db]}\n",
        );
        let plan = recipe.plan("rhel7").unwrap();
        assert_eq!(plan.image.as_deref(), Some("special"));
        assert_eq!(
            plan.artifacts,
            Some(vec!["lib".to_owned(), "db".to_owned()])
        );
    }

    #[test]
    fn build_per_environment() {
        let recipe = parse(
            "image: default-image\n\
             build:\n  rhel7:\n    image: rhel7-image\n    command: make rhel7\n  \
             ROCKY9:\n    command: make rocky9\n    artifacts: [bin]\n  alma9: make alma\n",
        );
        let rhel7 = recipe.plan("RHEL7").unwrap();
        assert_eq!(rhel7.command, "make rhel7");
        assert_eq!(rhel7.image.as_deref(), Some("rhel7-image"));
        assert_eq!(rhel7.artifacts, None);
        let rocky9 = recipe.plan("rocky9").unwrap();
        assert_eq!(rocky9.command, "make rocky9");
        assert_eq!(rocky9.image.as_deref(), Some("default-image"));
        assert_eq!(rocky9.artifacts, Some(vec!["bin".to_owned()]));
        assert_eq!(recipe.plan("alma9").unwrap().command, "make alma");

        let reason = no_command_reason(recipe.plan("rhel8").unwrap_err());
        assert_eq!(
            reason,
            "the recipe has build targets rhel7, ROCKY9, alma9 but none for environment rhel8"
        );
    }

    #[test]
    fn build_multi_target_firmware_parses_but_plans_fail() {
        let recipe = parse(
            "image: bookworm\n\
             build:\n  prc:\n    command: \"cd firmware/prc && make CONFIG=$TARGET prc.bit\"\n    \
             matrix:\n      TARGET: [qf2_v07, marble]\n    artifacts:\n      - \"firmware/prc/*.bit\"\n  \
             resonance_control:\n    command: make rc\n    matrix:\n      TARGET: [marble]\n",
        );
        let Some(Build::Targets(targets)) = &recipe.build else {
            panic!("expected targets: {:?}", recipe.build);
        };
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].0, "prc");
        assert_eq!(
            targets[0].1.artifacts,
            Some(vec!["firmware/prc/*.bit".to_owned()])
        );
        assert!(targets[0].1.extra.contains_key("matrix"));
        assert!(recipe
            .warnings
            .iter()
            .any(|w| w.contains("build.prc.matrix")));

        let err = recipe.plan("rocky9").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("test.yaml: "), "{message}");
        assert!(
            message.contains(
                "the recipe has build targets prc, resonance_control but none for environment rocky9"
            ),
            "{message}"
        );
    }

    #[test]
    fn build_targets_merge_keys() {
        let recipe = parse(
            "defaults: &defaults\n  image: shared-image\n  artifacts: [bin]\n\
             build:\n  rocky9:\n    <<: *defaults\n    command: make\n  \
             rhel7:\n    <<: *defaults\n    image: rhel7-image\n    command: make\n",
        );
        let rocky9 = recipe.plan("rocky9").unwrap();
        assert_eq!(rocky9.image.as_deref(), Some("shared-image"));
        assert_eq!(rocky9.artifacts, Some(vec!["bin".to_owned()]));
        assert_eq!(
            recipe.plan("rhel7").unwrap().image.as_deref(),
            Some("rhel7-image")
        );
    }

    #[test]
    fn build_target_without_command() {
        let recipe = parse("build:\n  rocky9:\n    image: x\n  rhel7:\n");
        let reason = no_command_reason(recipe.plan("rocky9").unwrap_err());
        assert_eq!(reason, "build target `rocky9` has no `command`");
        assert!(recipe.plan("rhel7").is_err());
    }

    #[test]
    fn build_mapping_with_image_only_is_common_without_command() {
        let recipe = parse("build: {image: x}\n");
        let reason = no_command_reason(recipe.plan("rocky9").unwrap_err());
        assert_eq!(reason, "the recipe's `build:` has no `command`");
    }

    #[test]
    fn build_absent_or_empty() {
        for text in [
            "repo: x\n",
            "build:\n",
            "build: {}\n",
            "",
            "# only a comment\n",
        ] {
            let recipe = parse(text);
            assert_eq!(recipe.build, None, "{text:?}");
            let reason = no_command_reason(recipe.plan("rocky9").unwrap_err());
            assert!(reason.contains("no `build:`"), "{reason}");
            assert!(reason.contains("Recipe::from_dir"), "{reason}");
        }
    }

    #[test]
    fn build_bad_shapes_fail_with_line() {
        let err = Recipe::parse("repo: x\nbuild: [make]\n", "bad.yaml").unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("bad.yaml: build: invalid type: sequence"),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");

        let err = Recipe::parse("build: \"  \"\n", "bad.yaml").unwrap_err();
        assert!(err.to_string().contains("empty build command"), "{err}");

        let err = Recipe::parse("build:\n  rocky9: [make]\n", "bad.yaml").unwrap_err();
        assert!(
            err.to_string()
                .contains("build: rocky9: expected a command string"),
            "{err}"
        );
    }

    // --- environments ------------------------------------------------------------------------

    #[test]
    fn environments_list_is_case_insensitive() {
        let recipe = parse("environments:\n  - ROCKY9\n  - rhel7\n  - Rocky9\nbuild: make\n");
        assert_eq!(
            recipe.environment_names(),
            Some(vec!["rocky9".to_owned(), "rhel7".to_owned()])
        );
        assert_eq!(recipe.plan("Rocky9").unwrap().arch, "rocky9");
        let err = recipe.plan("rhel8").unwrap_err();
        match &err {
            RecipeError::EnvironmentNotListed { arch, allowed, .. } => {
                assert_eq!(arch, "rhel8");
                assert_eq!(allowed, &["rocky9", "rhel7"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "test.yaml: environment `rhel8` is not one of the recipe's environments (rocky9, rhel7)"
        );
    }

    #[test]
    fn environments_single_string() {
        let recipe = parse("environments: ROCKY9\nbuild: make\n");
        assert_eq!(recipe.environment_names(), Some(vec!["rocky9".to_owned()]));
    }

    #[test]
    fn environments_format_2_with_dependencies() {
        let recipe = parse(
            "build: build.sh\n\
             dependencies:\n  - common: C1\n\
             environments:\n  rocky9:\n    dependencies:\n      - epics-base: R7.0.8\n      \
             - boost: boost-1.85.0\n  RHEL7:\n    dependencies:\n      - epics-base: R3.15\n  \
             alma9:\n  alma8:\n    notes: ignored\n",
        );
        assert_eq!(
            recipe.environment_names(),
            Some(vec![
                "rocky9".to_owned(),
                "rhel7".to_owned(),
                "alma9".to_owned(),
                "alma8".to_owned()
            ])
        );
        assert_eq!(
            recipe.plan("rocky9").unwrap().dependencies,
            vec![dep("epics-base", "R7.0.8"), dep("boost", "boost-1.85.0")]
        );
        assert_eq!(
            recipe.plan("rhel7").unwrap().dependencies,
            vec![dep("epics-base", "R3.15")]
        );
        // No list of its own: the common list.
        assert_eq!(
            recipe.plan("alma9").unwrap().dependencies,
            vec![dep("common", "C1")]
        );
        assert_eq!(
            recipe.plan("alma8").unwrap().dependencies,
            vec![dep("common", "C1")]
        );
        assert!(recipe.plan("rocky8").is_err());
    }

    #[test]
    fn environments_empty_is_an_error() {
        let err = Recipe::parse("environments: []\n", "e.yaml").unwrap_err();
        assert!(
            err.to_string().contains("environments: empty list"),
            "{err}"
        );
        let err = Recipe::parse("environments: {}\n", "e.yaml").unwrap_err();
        assert!(
            err.to_string().contains("environments: empty list"),
            "{err}"
        );
        // No value at all means the key is not given.
        assert_eq!(parse("environments:\n").environments, None);
    }

    #[test]
    fn plan_rejects_bad_environment_names() {
        let recipe = parse("build: make\n");
        for arch in ["", "  ", "rocky9/../x", "a b"] {
            assert!(
                matches!(
                    recipe.plan(arch),
                    Err(RecipeError::InvalidEnvironment { .. })
                ),
                "{arch:?}"
            );
        }
    }

    // --- dependencies ------------------------------------------------------------------------

    #[test]
    fn dependencies_list_keeps_tags_as_written() {
        let recipe = parse(
            "build: make\ndependencies:\n  - epics-base: R7.0.8\n  - asyn: R4.39-1.0.1\n  \
             - numeric: 1.10\n  - integer: 2\n  - float: 1.0\n  - quoted: \"007\"\n  \
             - octal_looking: 0755\n  - x: 1\n    y: 2\n",
        );
        assert_eq!(
            recipe.plan("rocky9").unwrap().dependencies,
            vec![
                dep("epics-base", "R7.0.8"),
                dep("asyn", "R4.39-1.0.1"),
                dep("numeric", "1.10"),
                dep("integer", "2"),
                dep("float", "1.0"),
                dep("quoted", "007"),
                dep("octal_looking", "0755"),
                dep("x", "1"),
                dep("y", "2"),
            ]
        );
    }

    #[test]
    fn dependencies_per_environment_mapping() {
        let recipe = parse(
            "build: make\ndependencies:\n  ROCKY9:\n    - epics-base: R7.0.8\n  rhel7:\n    \
             - epics-base: R3.15.5\n  rhel8:\n",
        );
        assert_eq!(
            recipe.plan("rocky9").unwrap().dependencies,
            vec![dep("epics-base", "R7.0.8")]
        );
        assert_eq!(
            recipe.plan("rhel7").unwrap().dependencies,
            vec![dep("epics-base", "R3.15.5")]
        );
        assert!(recipe.plan("rhel8").unwrap().dependencies.is_empty());
        assert!(recipe.plan("alma9").unwrap().dependencies.is_empty());
    }

    #[test]
    fn dependencies_bad_entries_fail_with_line() {
        let err = Recipe::parse(
            "build: make\ndependencies:\n  - epics-base: R7\n  - asyn\n",
            "deps.yaml",
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(
                "deps.yaml: dependencies[1]: dependency `asyn` has no tag; write `- asyn: <tag>`"
            ),
            "{message}"
        );
        assert!(message.contains("line 4"), "{message}");

        let err = Recipe::parse("dependencies:\n  - asyn:\n", "deps.yaml").unwrap_err();
        assert!(err.to_string().contains("`asyn` has no tag"), "{err}");

        let err = Recipe::parse("dependencies:\n  - asyn: [1]\n", "deps.yaml").unwrap_err();
        assert!(err.to_string().contains("invalid type: sequence"), "{err}");

        let err = Recipe::parse("dependencies:\n  epics-base: R7\n", "deps.yaml").unwrap_err();
        assert!(err.to_string().contains("dependencies.epics-base"), "{err}");
    }

    #[test]
    fn dependencies_given_twice_for_one_environment_is_an_error() {
        let err = Recipe::parse(
            "environments:\n  rocky9:\n    dependencies:\n      - a: 1\n\
             dependencies:\n  rocky9:\n    - a: 2\n",
            "twice.yaml",
        )
        .unwrap_err();
        assert!(matches!(err, RecipeError::Invalid { .. }));
        assert_eq!(
            err.to_string(),
            "twice.yaml: dependencies for `rocky9` are given both under `environments` and under \
             `dependencies`; keep one"
        );
    }

    // --- artifacts, extra keys, duplicates, documents ----------------------------------------

    #[test]
    fn artifacts_shapes() {
        assert_eq!(parse("build: make\n").artifacts, None);
        assert_eq!(
            parse("artifacts:\n  - bin\n  - db\n").artifacts,
            Some(vec!["bin".to_owned(), "db".to_owned()])
        );
        assert_eq!(
            parse("artifacts: out/*.tar\n").artifacts,
            Some(vec!["out/*.tar".to_owned()])
        );
        for bad in [
            "artifacts: []\n",
            "artifacts: [/etc]\n",
            "artifacts: [../x]\n",
            "artifacts: [a/../../b]\n",
            "build: {command: make, artifacts: [/etc]}\n",
        ] {
            assert!(Recipe::parse(bad, "a.yaml").is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_are_kept() {
        let recipe = parse(
            "repo: x\nformat: 2\ndeploy:\n  playbook: p.yml\ntest:\n  t1:\n    command: make check\n\
             build: make\n",
        );
        assert_eq!(
            recipe.extra.get("repo"),
            Some(&Value::String("x".to_owned()))
        );
        assert_eq!(recipe.extra.get("format"), Some(&Value::Number(2.into())));
        assert!(recipe.extra.get("deploy").is_some_and(Value::is_mapping));
        assert!(recipe.extra.contains_key("test"));
        assert!(!recipe.extra.contains_key("build"));
        assert!(recipe.warnings.is_empty());
    }

    #[test]
    fn repeated_keys_last_wins_with_warnings() {
        let recipe = parse(
            "format: 1\nbuild: make\nenvironments: [rocky9]\nformat: 2\nbuild: build.sh\n\
             deploy: {a: 1, a: 2}\nenvironments:\n  rhel7:\n",
        );
        assert_eq!(recipe.plan("rhel7").unwrap().command, "sh ./build.sh");
        assert!(recipe.plan("rocky9").is_err());
        assert_eq!(recipe.extra.get("format"), Some(&Value::Number(2.into())));
        assert_eq!(
            recipe.warnings,
            vec![
                "repeated key `format`: the later value is used",
                "repeated key `build`: the later value is used",
                "repeated key `deploy.a`: the later value is used",
                "repeated key `environments`: the later value is used",
            ]
        );
    }

    #[test]
    fn not_a_recipe_fails_clearly() {
        let err = Recipe::parse("just a string\n", "s.yaml").unwrap_err();
        assert!(
            err.to_string().starts_with("s.yaml: invalid type: string"),
            "{err}"
        );
        let err = Recipe::parse("build: [\n", "broken.yaml").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("broken.yaml: "), "{message}");
        assert!(message.contains("line"), "{message}");
        let err = Recipe::parse("build: make\n---\nbuild: ninja\n", "multi.yaml").unwrap_err();
        assert!(err.to_string().contains("more than one document"), "{err}");
    }

    #[test]
    fn plan_serializes() {
        let plan = parse("build: make\ndependencies: [{a: '1'}]\n")
            .plan("rocky9")
            .unwrap();
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "arch": "rocky9",
                "command": "make",
                "image": null,
                "dependencies": [{"name": "a", "tag": "1"}],
                "artifacts": null,
            })
        );
    }

    // --- from_dir ----------------------------------------------------------------------------

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn from_dir_prefers_root_config_yaml() {
        let dir = tree(&[
            ("config.yaml", "build: make root\n"),
            ("configure/CONFIG.yaml", "build: make configure\n"),
            ("build.sh", "exit 1\n"),
        ]);
        let recipe = Recipe::from_dir(dir.path()).unwrap();
        assert_eq!(recipe.plan("rocky9").unwrap().command, "make root");
        assert_eq!(recipe.build_origin, BuildOrigin::Recipe);
        assert!(recipe.source_name.ends_with("config.yaml"));
    }

    #[test]
    fn from_dir_falls_back_to_configure_config_yaml() {
        let dir = tree(&[
            (
                "configure/CONFIG.yaml",
                "environments: [ROCKY9]\nbuild: build.sh\n",
            ),
            ("configure/RELEASE", "EPICS_BASE=/x\n"),
        ]);
        let recipe = Recipe::from_dir(dir.path()).unwrap();
        assert!(recipe.source_name.ends_with("configure/CONFIG.yaml"));
        assert_eq!(recipe.plan("rocky9").unwrap().command, "sh ./build.sh");
    }

    #[test]
    fn from_dir_detects_when_recipe_has_no_build() {
        // An EPICS IOC: `configure/` is a directory, so it is not a configure script.
        let dir = tree(&[
            (
                "configure/CONFIG.yaml",
                "repo: ioc\ndeploy: {playbook: x.yml}\n",
            ),
            ("configure/RELEASE", ""),
            ("Makefile", "all:\n"),
        ]);
        let recipe = Recipe::from_dir(dir.path()).unwrap();
        assert_eq!(
            recipe.build_origin,
            BuildOrigin::Detected {
                file: "Makefile".to_owned()
            }
        );
        assert_eq!(recipe.plan("rocky9").unwrap().command, "make");
        assert!(recipe.extra.contains_key("deploy"));
    }

    #[test]
    fn from_dir_detection_order_without_recipe() {
        let cases: [(&[&str], &str, &str); 7] = [
            (
                &["build.sh", "configure", "CMakeLists.txt", "Makefile"],
                "build.sh",
                "sh ./build.sh",
            ),
            (
                &["configure", "CMakeLists.txt", "Makefile"],
                "configure",
                "./configure && make",
            ),
            (
                &["CMakeLists.txt", "Makefile"],
                "CMakeLists.txt",
                "cmake -S . -B build && cmake --build build",
            ),
            (&["Makefile"], "Makefile", "make"),
            (&["makefile"], "makefile", "make"),
            (&["GNUmakefile"], "GNUmakefile", "make"),
            (&["configure/RELEASE", "GNUmakefile"], "GNUmakefile", "make"),
        ];
        for (files, detected, command) in cases {
            let files: Vec<(&str, &str)> = files.iter().map(|f| (*f, "")).collect();
            let dir = tree(&files);
            let recipe = Recipe::from_dir(dir.path()).unwrap();
            assert_eq!(
                recipe.build_origin,
                BuildOrigin::Detected {
                    file: detected.to_owned()
                },
                "{files:?}"
            );
            let plan = recipe.plan("RHEL7").unwrap();
            assert_eq!(plan.command, command, "{files:?}");
            assert_eq!(plan.arch, "rhel7");
            assert_eq!(plan.image, None);
            assert_eq!(plan.artifacts, None);
        }
    }

    #[test]
    fn from_dir_nothing_to_build() {
        let dir = tree(&[("README.md", "hi\n"), ("configure/RELEASE", "")]);
        let err = Recipe::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, RecipeError::NoRecipe { .. }));
        let message = err.to_string();
        for looked_for in [
            "config.yaml",
            "configure/CONFIG.yaml",
            "build.sh",
            "configure",
            "CMakeLists.txt",
            "Makefile",
            "makefile",
            "GNUmakefile",
        ] {
            assert!(message.contains(looked_for), "{message}");
        }
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn from_dir_recipe_without_build_and_nothing_detected() {
        let dir = tree(&[("config.yaml", "repo: hla\ndeploy: {playbook: p.yml}\n")]);
        let recipe = Recipe::from_dir(dir.path()).unwrap();
        assert_eq!(
            recipe.build_origin,
            BuildOrigin::Absent {
                detection_tried: true
            }
        );
        let err = recipe.plan("rocky9").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("config.yaml: no build command for environment `rocky9`"));
        assert!(
            message.contains("the source tree has none of build.sh"),
            "{message}"
        );
    }

    #[test]
    fn from_dir_parse_error_names_the_file() {
        let dir = tree(&[("config.yaml", "build: [\n")]);
        let err = Recipe::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, RecipeError::Parse { .. }));
        assert!(err.to_string().contains("config.yaml: "), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn from_dir_refuses_recipe_symlinked_outside_the_tree() {
        let outside = tree(&[("secret.yaml", "build: make\n")]);
        let dir = tree(&[("Makefile", "")]);
        std::os::unix::fs::symlink(
            outside.path().join("secret.yaml"),
            dir.path().join("config.yaml"),
        )
        .unwrap();
        let err = Recipe::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, RecipeError::Invalid { .. }), "{err:?}");
        assert!(err.to_string().contains("outside the source tree"), "{err}");

        // A link inside the tree is fine.
        let dir = tree(&[("ci/recipe.yaml", "build: make inside\n")]);
        std::os::unix::fs::symlink("ci/recipe.yaml", dir.path().join("config.yaml")).unwrap();
        let recipe = Recipe::from_dir(dir.path()).unwrap();
        assert_eq!(recipe.plan("rocky9").unwrap().command, "make inside");
    }

    #[test]
    fn from_dir_refuses_huge_recipe() {
        let big = format!("repo: x\n# {}\n", "x".repeat(MAX_RECIPE_BYTES as usize));
        let dir = tree(&[("config.yaml", &big)]);
        let err = Recipe::from_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
    }

    // --- the lab's real recipes (fixtures/recipes, copied from the lab) ---------------------------------

    const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/recipes");

    fn example(name: &str) -> Recipe {
        let path = Path::new(EXAMPLES).join(name);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Recipe::parse(&text, name).unwrap_or_else(|e| panic!("{name} should parse: {e}"))
    }

    /// Every example file must appear here with its expected outcome.
    fn check_example(name: &str) {
        match name {
            "config.yaml" => {
                let recipe = example(name);
                assert_eq!(recipe.environment_names(), Some(vec!["rocky9".to_owned()]));
                let plan = recipe.plan("ROCKY9").unwrap();
                assert_eq!(plan.command, "sh ./build.sh");
                assert_eq!(plan.arch, "rocky9");
                assert_eq!(plan.image, None);
                assert!(plan.dependencies.is_empty());
                assert_eq!(plan.artifacts, None);
                assert!(matches!(
                    recipe.plan("rhel7"),
                    Err(RecipeError::EnvironmentNotListed { .. })
                ));
                assert!(recipe.extra.contains_key("approvalRule"));
                assert!(recipe.warnings.is_empty());
            }
            "examples_firmware_config.yaml" => {
                let recipe = example(name);
                assert_eq!(
                    recipe.image.as_deref(),
                    Some("ghcr.io/ad-build-test/bookworm-env:latest")
                );
                let Some(Build::Targets(targets)) = &recipe.build else {
                    panic!("{name}: expected build targets, got {:?}", recipe.build);
                };
                let names: Vec<&str> = targets.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(names, ["prc", "resonance_control", "injector"]);
                assert_eq!(
                    targets[0].1.artifacts,
                    Some(vec!["firmware/prc/*.bit".to_owned()])
                );
                for key in ["variables", "test", "hardwareTest"] {
                    assert!(recipe.extra.contains_key(key), "{name}: {key}");
                }
                let message = recipe.plan("rocky9").unwrap_err().to_string();
                assert!(
                    message.contains(
                        "has build targets prc, resonance_control, injector but none for \
                         environment rocky9"
                    ),
                    "{message}"
                );
                // Only the matrix warnings.
                assert_eq!(recipe.warnings.len(), 3, "{:?}", recipe.warnings);
            }
            "examples_ioc_config.yaml" => {
                let recipe = example(name);
                let plan = recipe.plan("rocky9").unwrap();
                assert_eq!(
                    plan.image.as_deref(),
                    Some("ghcr.io/ad-build-test/rocky9-env:latest")
                );
                assert!(plan.command.starts_with("source /afs/"), "{}", plan.command);
                assert!(plan.command.ends_with("make"), "{}", plan.command);
                assert_eq!(
                    plan.artifacts,
                    Some(["bin", "db", "dbd", "iocBoot"].map(String::from).to_vec())
                );
                assert!(recipe.extra.contains_key("deploy"));
            }
            "examples_ioc_multiple_build_config.yaml" => {
                let recipe = example(name);
                for (arch, image) in [
                    ("ROCKY9", "ghcr.io/ad-build-test/rocky9-env:latest"),
                    ("rhel7", "ghcr.io/ad-build-test/rhel7-env:latest"),
                ] {
                    let plan = recipe.plan(arch).unwrap();
                    assert_eq!(plan.image.as_deref(), Some(image), "{arch}");
                    assert!(plan.command.contains("make"), "{arch}: {}", plan.command);
                    assert!(plan.command.contains("source "), "{arch}: {}", plan.command);
                    assert_eq!(plan.artifacts.as_ref().map(Vec::len), Some(4));
                }
                let reason = no_command_reason(recipe.plan("rhel8").unwrap_err());
                assert!(reason.contains("rhel7, rocky9"), "{reason}");
            }
            "examples_hla_config.yaml"
            | "examples_pydm_config.yaml"
            | "examples_python_config.yaml"
            | "examples_tools_config.yaml" => {
                let recipe = example(name);
                assert_eq!(recipe.build, None, "{name}");
                assert!(recipe.extra.contains_key("deploy"), "{name}");
                let reason = no_command_reason(recipe.plan("rocky9").unwrap_err());
                assert!(reason.contains("no `build:`"), "{name}: {reason}");
            }
            "other_CONFIG_structure.yaml" => {
                // Format 1 and format 2 written one after the other in ONE document: every key
                // repeats. Accepted as PyYAML reads it: the later value wins, each repeat warned.
                let recipe = example(name);
                assert_eq!(recipe.extra.get("format"), Some(&Value::Number(2.into())));
                assert_eq!(
                    recipe.environment_names(),
                    Some(vec!["rocky9".to_owned(), "rhel7".to_owned()])
                );
                for arch in ["rocky9", "RHEL7"] {
                    let plan = recipe.plan(arch).unwrap();
                    assert_eq!(plan.command, "sh ./build.sh");
                    assert_eq!(
                        plan.dependencies,
                        vec![dep("epics-base", "R7.0.8"), dep("boost", "boost-1.85.0")]
                    );
                }
                for key in ["format", "repo", "organization", "build", "environments"] {
                    let warning = format!("repeated key `{key}`: the later value is used");
                    assert!(recipe.warnings.contains(&warning), "{:?}", recipe.warnings);
                }
                assert_eq!(recipe.warnings.len(), 5, "{:?}", recipe.warnings);
            }
            "template_config.yaml" => {
                let recipe = example(name);
                let plan = recipe.plan("rocky9").unwrap();
                assert_eq!(plan.command, "sh ./build.sh");
                assert_eq!(
                    plan.dependencies,
                    vec![dep("epics-base", "R7.0.8"), dep("asyn", "R4.39-1.0.1")]
                );
                assert_eq!(recipe.plan("RHEL7").unwrap().dependencies.len(), 2);
                let err = recipe.plan("rhel8").unwrap_err();
                assert!(matches!(err, RecipeError::EnvironmentNotListed { .. }));
                let message = err.to_string();
                assert!(message.contains("template_config.yaml"), "{message}");
                assert!(message.contains("(rocky9, rhel7)"), "{message}");
                assert!(recipe.extra.contains_key("python"));
            }
            other => {
                panic!("{other}: a new example recipe; state its expected outcome in check_example")
            }
        }
    }

    #[test]
    fn lab_example_recipes() {
        let entries = fs::read_dir(EXAMPLES)
            .unwrap_or_else(|e| panic!("cannot read the example recipes at {EXAMPLES}: {e}"));
        let mut names: Vec<String> = entries
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".yaml"))
            .collect();
        names.sort();
        // Fails when a file is added or removed: each one's outcome is stated in check_example.
        assert_eq!(
            names,
            [
                "config.yaml",
                "examples_firmware_config.yaml",
                "examples_hla_config.yaml",
                "examples_ioc_config.yaml",
                "examples_ioc_multiple_build_config.yaml",
                "examples_pydm_config.yaml",
                "examples_python_config.yaml",
                "examples_tools_config.yaml",
                "other_CONFIG_structure.yaml",
                "template_config.yaml",
            ]
        );
        for name in &names {
            check_example(name);
        }
    }

    #[test]
    fn lab_examples_through_from_dir() {
        // A repo whose config.yaml has no build but a Makefile: detection fills the command in.
        let text =
            fs::read_to_string(Path::new(EXAMPLES).join("examples_pydm_config.yaml")).unwrap();
        let dir = tree(&[("config.yaml", &text), ("Makefile", "")]);
        let recipe = Recipe::from_dir(dir.path()).unwrap();
        assert_eq!(recipe.plan("rocky9").unwrap().command, "make");
    }
}
