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

mod detect;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_examples;
mod yaml;
mod yaml_env;

use serde::de::DeserializeSeed;
use serde::Serialize;
use serde_yaml_ng::Mapping;
use std::cell::RefCell;
use std::path::PathBuf;

use detect::detected_build_files;
pub use detect::{DETECTED_BUILDS, MAX_RECIPE_BYTES, RECIPE_FILES};
use yaml::RecipeSeed;

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
    /// The recipe's text as read (empty when there is no recipe file): part
    /// of a build's inputs.
    pub text: String,
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
            text: text.to_owned(),
        })
    }
    /// The environments the recipe lists (lower case), if it lists any.
    pub fn environment_names(&self) -> Option<Vec<String>> {
        self.environments
            .as_ref()
            .map(|envs| envs.iter().map(|e| e.name.clone()).collect())
    }

    /// The plan for one environment (`arch`, case-insensitive). Fails clearly when
    /// `environments` is given and does not list it, or when no build command applies.
    /// The dependencies of the environment `arch` (the recipe need not
    /// have a build command: a client's own recipe names only these).
    pub fn dependencies_for(&self, arch: &str) -> Result<Vec<Dependency>, RecipeError> {
        let arch = self.check_arch(arch)?;
        Ok(self.deps_of(&arch))
    }

    fn check_arch(&self, arch: &str) -> Result<String, RecipeError> {
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
        Ok(arch)
    }

    fn deps_of(&self, arch: &str) -> Vec<Dependency> {
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
        own_dependencies
            .or_else(|| match &self.dependencies {
                Some(Dependencies::Common(deps)) => Some(deps.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    pub fn plan(&self, arch: &str) -> Result<BuildPlan, RecipeError> {
        let arch = self.check_arch(arch)?;
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

        let dependencies = self.deps_of(&arch);
        Ok(BuildPlan {
            command: command.shell_command(),
            image: target.image.clone().or_else(|| self.image.clone()),
            dependencies,
            artifacts: target.artifacts.clone().or_else(|| self.artifacts.clone()),
            arch,
        })
    }
}
