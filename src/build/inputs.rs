//! A build's inputs key: the blake3 of everything that decides its output
//! (the source commit, the recipe's bytes, each dependency's blob in order,
//! the sandbox and its builder image, the arch). Two builds with one key
//! are the same build: the second reuses the first's output.

use crate::model::{ResolvedDependency, SubmodulePin};

/// What goes into the key.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub commit: &'a str,
    /// The submodules at the commits the source pins.
    pub submodules: &'a [SubmodulePin],
    pub recipe: &'a str,
    /// The dependency closure, in its (sorted) order.
    pub dependencies: &'a [ResolvedDependency],
    /// `bwrap`, `podman` or `process`.
    pub sandbox: &'a str,
    /// The builder image's id (podman), or `host`.
    pub image: &'a str,
    pub arch: &'a str,
}

impl Inputs<'_> {
    pub fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        let mut field = |name: &str, value: &[u8]| {
            h.update(name.as_bytes());
            h.update(&(value.len() as u64).to_le_bytes());
            h.update(value);
        };
        field("artifact-store inputs", b"v1");
        field("commit", self.commit.as_bytes());
        for m in self.submodules {
            field("submodule", m.path.as_bytes());
            field("pin", m.commit.as_bytes());
        }
        field("recipe", self.recipe.as_bytes());
        for d in self.dependencies {
            field("dependency", d.component.as_bytes());
            field("tag", d.tag.as_bytes());
            field("blake3", d.blake3.as_bytes());
        }
        field("sandbox", self.sandbox.as_bytes());
        field("image", self.image.as_bytes());
        field("arch", self.arch.as_bytes());
        h.finalize().to_hex().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_counts() {
        let dep = |b: &str| ResolvedDependency {
            component: "base".into(),
            tag: "R1".into(),
            arch: "rocky9".into(),
            blake3: b.into(),
        };
        let deps = [dep("aa")];
        let subs = [SubmodulePin {
            path: "modules/pvData".into(),
            url: "https://x/pvData".into(),
            fetched_from: None,
            commit: "s1".into(),
        }];
        let other_subs = [SubmodulePin {
            commit: "s2".into(),
            ..subs[0].clone()
        }];
        let base = Inputs {
            commit: "c1",
            submodules: &subs,
            recipe: "build: make",
            dependencies: &deps,
            sandbox: "bwrap",
            image: "host",
            arch: "rocky9",
        };
        let k = base.key();
        assert_eq!(k, base.key());
        let other_deps = [dep("bb")];
        for changed in [
            Inputs {
                commit: "c2",
                ..base
            },
            Inputs {
                submodules: &other_subs,
                ..base
            },
            Inputs {
                submodules: &[],
                ..base
            },
            Inputs {
                recipe: "build: make -j",
                ..base
            },
            Inputs {
                dependencies: &other_deps,
                ..base
            },
            Inputs {
                sandbox: "podman",
                ..base
            },
            Inputs {
                image: "sha256:x",
                ..base
            },
            Inputs {
                arch: "rhel7",
                ..base
            },
        ] {
            assert_ne!(changed.key(), k);
        }
    }
}
