//! Packing + hashing speed: artifact-store's deterministic pack (tar +
//! zstd -3, 2 workers, blake3 of the output) against
//! `tar -c | zstd -3 -T0 | b3sum` on the same tree, in the same run.
//!
//! `cargo bench --bench pack -- [DIR...]` (default: /usr/include /usr/lib/gcc
//! copied into one temp tree, about 250 MiB). Not a test: it prints ratios.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use artifact_store::store::pack::{pack_dir, PackOptions};

fn du(p: &Path) -> u64 {
    walkdir::WalkDir::new(p)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let sources: Vec<PathBuf> = if args.is_empty() {
        vec!["/usr/include".into(), "/usr/lib/gcc".into()]
    } else {
        args.iter().map(PathBuf::from).collect()
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    for s in &sources {
        let st = Command::new("cp")
            .arg("-a")
            .arg(s)
            .arg(&tree)
            .status()
            .expect("cp");
        assert!(st.success());
    }
    let size = du(&tree);
    println!("tree: {} MiB in {}", size >> 20, tree.display());
    // warm the page cache for both
    let _ = Command::new("tar")
        .args(["-cf", "/dev/null", "-C"])
        .arg(&tree)
        .arg(".")
        .status();

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    for _ in 0..rounds {
        let t = Instant::now();
        let opts = PackOptions {
            prefix: "R1.0".into(),
            mtime_clamp: Some(1_700_000_000),
            level: 3,
            max_bytes: u64::MAX,
            max_entries: u64::MAX,
        };
        let sink = pack_dir(&tree, &opts, blake3::Hasher::new()).expect("pack");
        ours.push(t.elapsed().as_secs_f64());
        let _ = sink.finalize();

        let t = Instant::now();
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -c -C '{}' . | zstd -3 -T0 -q -c | b3sum > /dev/null",
                tree.display()
            ))
            .status()
            .expect("sh");
        assert!(
            st.success(),
            "tar | zstd | b3sum failed (apt-get install zstd b3sum)"
        );
        theirs.push(t.elapsed().as_secs_f64());
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (o, t) = (med(&mut ours), med(&mut theirs));
    println!(
        "artifact-store pack+blake3: {o:.2} s ({:.0} MiB/s)",
        size as f64 / 1048576.0 / o
    );
    println!(
        "tar | zstd -3 -T0 | b3sum:  {t:.2} s ({:.0} MiB/s)",
        size as f64 / 1048576.0 / t
    );
    println!("ratio (speed, ours / pipeline): {:.2}x", t / o);
}
