//! A build's inputs key: the blake3 of everything that decides its output
//! (the repository and component, the tag, the source commit and its
//! submodules, the recipe's bytes, each dependency's blob in order, the
//! sandbox and its builder image, the arch). Two builds with one key are
//! the same build: the second reuses the first's output.
//!
//! Why the repository, the component and the tag are in it: a build sees
//! them (`ADBS_COMPONENT`, `ADBS_TAG`, the remote URL and every tag in
//! `.git`) and may write them into its output, so a fork's build of the
//! same commit, another component's, or another tag's can differ from this
//! one's. Reuse across tags of one commit is possible on request
//! (`build.reuse_across_tags`: the tag is then left out), for labs whose
//! builds never record their tag.

use crate::model::{ResolvedDependency, SubmodulePin};

/// What goes into the key.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// The repository as fetched (after rewrites), in canonical form
    /// (`git::url::canonical`).
    pub url: &'a str,
    pub component: &'a str,
    /// `None` with `build.reuse_across_tags`.
    pub tag: Option<&'a str>,
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
        field("artifact-store inputs", b"v2");
        field("repository", self.url.as_bytes());
        field("component", self.component.as_bytes());
        match self.tag {
            Some(t) => field("tag", t.as_bytes()),
            None => field("any tag", b""),
        }
        field("commit", self.commit.as_bytes());
        for m in self.submodules {
            field("submodule", m.path.as_bytes());
            field(
                "from",
                m.fetched_from.as_deref().unwrap_or(&m.url).as_bytes(),
            );
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
            url: "git://h/base",
            component: "base",
            tag: Some("R1"),
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
        let fork_subs = [SubmodulePin {
            url: "https://x/fork-of-pvData".into(),
            ..subs[0].clone()
        }];
        for changed in [
            Inputs {
                url: "git://h/fork",
                ..base
            },
            Inputs {
                component: "base2",
                ..base
            },
            Inputs {
                tag: Some("R2"),
                ..base
            },
            Inputs { tag: None, ..base },
            Inputs {
                submodules: &fork_subs,
                ..base
            },
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
