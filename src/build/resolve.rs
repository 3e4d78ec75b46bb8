//! Dependency closure: a pure function over records already resolved.
//! Each stored record lists its own resolved closure, so the closure of a
//! build is its direct dependencies plus theirs, checked for two tags of one
//! component.

use std::collections::BTreeMap;

use crate::model::{Record, ResolvedDependency};

/// The closure of the direct dependencies `direct` of `root`, in a stable
/// order (by name). Fails when one component appears with two tags.
pub fn closure(root: &str, direct: &[Record]) -> Result<Vec<ResolvedDependency>, String> {
    // name -> (dependency, how it was reached)
    let mut seen: BTreeMap<String, (ResolvedDependency, String)> = BTreeMap::new();
    let mut add = |d: ResolvedDependency, via: String| -> Result<(), String> {
        match seen.get(&d.component) {
            Some((prev, prev_via)) if prev.tag != d.tag => Err(format!(
                "two tags of {} in the dependency closure of {root}: {} (via {prev_via}) and {} (via {via})",
                d.component, prev.tag, d.tag
            )),
            Some(_) => Ok(()),
            None => {
                seen.insert(d.component.clone(), (d, via));
                Ok(())
            }
        }
    };
    for r in direct {
        add(
            ResolvedDependency {
                component: r.component.clone(),
                tag: r.tag.clone(),
                arch: r.arch.clone(),
                blake3: r.blake3.clone(),
            },
            format!("{root} -> {}", r.component),
        )?;
        for d in &r.dependencies {
            add(
                d.clone(),
                format!("{root} -> {} -> {}", r.component, d.component),
            )?;
        }
    }
    Ok(seen.into_values().map(|(d, _)| d).collect())
}

/// Fails when `name` is already on the chain of builds that led here.
pub fn check_cycle(chain: &[String], name: &str) -> Result<(), String> {
    if chain.iter().any(|c| c == name) {
        let mut path = chain.to_vec();
        path.push(name.to_owned());
        return Err(format!("dependency cycle: {}", path.join(" -> ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn rec(c: &str, t: &str, deps: &[(&str, &str)]) -> Record {
        Record {
            component: c.into(),
            tag: t.into(),
            arch: "rocky9".into(),
            blake3: format!("h-{c}-{t}"),
            size: 1,
            created: Utc::now(),
            uploaded_by: Default::default(),
            source: None,
            dependencies: deps
                .iter()
                .map(|(c, t)| ResolvedDependency {
                    component: (*c).into(),
                    tag: (*t).into(),
                    arch: "rocky9".into(),
                    blake3: format!("h-{c}-{t}"),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn diamond_and_conflict() {
        let b = rec("b", "1", &[("base", "7")]);
        let c = rec("c", "1", &[("base", "7")]);
        let cl = closure("a", &[b.clone(), c]).unwrap();
        let names: Vec<_> = cl.iter().map(|d| d.component.as_str()).collect();
        assert_eq!(names, ["b", "base", "c"]);
        let c2 = rec("c", "1", &[("base", "6")]);
        let err = closure("a", &[b, c2]).unwrap_err();
        assert!(err.contains("two tags of base"), "{err}");
        assert!(err.contains("a -> c -> base"), "{err}");
    }

    #[test]
    fn cycles() {
        let chain = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            check_cycle(&chain, "a").unwrap_err(),
            "dependency cycle: a -> b -> a"
        );
        assert!(check_cycle(&chain, "c").is_ok());
    }
}
