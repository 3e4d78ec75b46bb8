//! The recipe parser's tests: every shape, and the lab's real recipes.

use super::*;
use std::fs;

use serde_yaml_ng::Value;

fn parse(text: &str) -> Recipe {
    Recipe::parse(text, "test.yaml").unwrap()
}

pub(super) fn dep(name: &str, tag: &str) -> Dependency {
    Dependency {
        name: name.to_owned(),
        tag: tag.to_owned(),
    }
}

pub(super) fn no_command_reason(err: RecipeError) -> String {
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

pub(super) fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
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
