//! The lab's real recipes (copies in `fixtures/recipes`): every file must
//! parse to its expected plan.

use std::fs;
use std::path::Path;

use serde_yaml_ng::Value;

use super::tests::{dep, no_command_reason, tree};
use super::*;

// --- the lab's real recipes (fixtures/recipes, copied from the lab) ---------------------------------

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/recipes");

fn example(name: &str) -> Recipe {
    let path = Path::new(EXAMPLES).join(name);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
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
    let text = fs::read_to_string(Path::new(EXAMPLES).join("examples_pydm_config.yaml")).unwrap();
    let dir = tree(&[("config.yaml", &text), ("Makefile", "")]);
    let recipe = Recipe::from_dir(dir.path()).unwrap();
    assert_eq!(recipe.plan("rocky9").unwrap().command, "make");
}
