//! Reading a recipe from a source tree, and detecting a build when the
//! recipe gives none.

use std::path::Path;

use serde_yaml_ng::Mapping;

use super::{Build, BuildCommand, BuildOrigin, BuildTarget, Recipe, RecipeError};

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

pub(super) fn detected_build_files() -> String {
    DETECTED_BUILDS
        .iter()
        .map(|(file, _)| *file)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Recipe {
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
                text: String::new(),
            }),
            None => Err(RecipeError::NoRecipe {
                dir: dir.to_path_buf(),
            }),
        }
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
