//! Image builds handed to workers (`[image] executor`): a polling
//! `artifact-store worker` and the tests' real one-node Slurm cluster build
//! with podman and push to the real registry; the service checks the digest
//! in the registry before it writes the record. What a job token of an
//! image build may do, and what a worker may not claim.

use std::process::{Child, Command, Stdio};

use super::*;

/// A config that hands image builds to `executor` and pushes to `reg`;
/// the write key may claim builds.
fn dispatch_config(reg: &str) -> String {
    config_with_keys(&format!(
        "[build]\nworker_keys = [\"ci\"]\n[image]\nregistry = \"{reg}\"\ntls_verify = false\n\
         [gc]\ninterval_secs = 0\ngrace_secs = 0\n"
    ))
}

/// A GC pass (admin); the blobs it removed.
fn gc(s: &Server) -> Vec<String> {
    let (status, v) = json_of(
        client()
            .post(s.url("/v1/admin/gc"))
            .header("Authorization", bearer(ADMIN_KEY))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{v}");
    v["blobs_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_owned())
        .collect()
}

/// `artifact-store worker --poll` for rocky9 with the write key.
fn polling_worker(s: &Server, name: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .args([
            "worker", "--poll", "--server", &s.base, "--name", name, "--arch", "rocky9",
        ])
        .env("ARTIFACT_STORE_TOKEN", WRITE_KEY)
        .env_remove("ARTIFACT_STORE_CONFIG")
        .stderr(Stdio::null())
        .spawn()
        .expect("start the polling worker")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asks for an image build without waiting: the job's id.
fn start_image(s: &Server, component: &str, df: &str, ctx: Option<&[u8]>) -> String {
    let (status, q, _) = post_form(
        s,
        "/v1/images",
        form(
            component,
            "main",
            "rocky9",
            df,
            ctx.map(|c| ("c.tar.gz", c)),
        ),
    );
    assert_eq!(status, 202, "{q}");
    q["job"].as_str().unwrap().to_owned()
}

/// Waits until the job's log holds `needle`.
fn wait_log(s: &Server, id: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !job_log(s, id).contains(needle) {
        assert!(Instant::now() < deadline, "{}", job_log(s, id));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pulls `name` back from the registry and reads `path` in it.
fn pulled(name: &str, path: &str) -> String {
    podman_ok(&["pull", "--tls-verify=false", name]);
    cat_in_image(name, path)
}

/// GET with the read key: 200 and the JSON.
fn read(s: &Server, path: &str) -> Value {
    let (status, v) = json_of(
        client()
            .get(s.url(path))
            .header("Authorization", bearer(READ_KEY))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{path}: {v}");
    v
}

#[test]
fn a_polling_worker_builds_and_pushes_an_image() {
    let reg = Registry::start();
    let s = Server::start_with_env(
        &dispatch_config(&reg.addr()),
        &[
            ("ARTIFACT_STORE_IMAGE__EXECUTOR", "worker"),
            // the worker fetches the context with its job token alone
            ("ARTIFACT_STORE_AUTH__ANONYMOUS_READ", "false"),
        ],
    );
    let _worker = Killed(polling_worker(&s, "img-vm1"));
    let df = dockerfile("COPY hello.txt /hello.txt\nRUN echo 'run on the worker' >> /hello.txt\n");
    let ctx = tar_gz("", &[("hello.txt", b"from the context (d1)\n")]);
    let (status, v, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form(
            "ImgD1_IOC",
            "main",
            "rocky9",
            &df,
            Some(("context.tar.gz", &ctx)),
        ),
    );
    assert_eq!(status, 200, "{v}");
    let repo = "imgd1-ioc-main-image";
    assert_pushed(&v, &reg.addr(), repo, "rocky9");
    assert_eq!(v["built_by"]["linux_username"], "imager", "{v}");
    let id = v["job"].as_str().unwrap();
    let job = read(&s, &format!("/v1/jobs/{id}"))["job"].clone();
    assert_eq!(job["state"], "success", "{job}");
    assert_eq!(job["kind"], "image");
    assert_eq!(
        step_names(&job),
        [
            "dispatch image ImgD1_IOC main",
            "context",
            "build",
            "push",
            "report"
        ],
        "{job}"
    );
    let log = client()
        .get(s.url(&format!("/v1/jobs/{id}/log")))
        .header("Authorization", bearer(READ_KEY))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(log.contains("claimed by worker img-vm1"), "{log}");
    assert!(
        log.contains("STEP 2/3"),
        "podman's output on the worker: {log}"
    );
    // the record is what the registry holds
    let got = read(&s, "/v1/images/ImgD1_IOC/main/rocky9");
    assert_eq!(got["digest"], v["digest"]);
    let immutable = v["immutableName"].as_str().unwrap();
    podman_ok(&["rmi", "-f", immutable, v["imageName"].as_str().unwrap()]);
    let by_digest = format!("{}/{repo}@{}", reg.addr(), v["digest"].as_str().unwrap());
    assert_eq!(
        pulled(&by_digest, "/hello.txt"),
        "from the context (d1)\nrun on the worker\n"
    );

    // the same Dockerfile and context: a cache hit, no job
    let (status, again, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form(
            "ImgD1_IOC",
            "main",
            "rocky9",
            &df,
            Some(("context.tar.gz", &ctx)),
        ),
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["cached"], true, "{again}");

    // a failing Dockerfile fails on the worker: the previous image stays
    let bad = dockerfile("RUN echo failing-on-the-worker-d1 && exit 4\n");
    let (status, f, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form("ImgD1_IOC", "main", "rocky9", &bad, None),
    );
    assert_error(status, &f, 422, "step 'build' failed");
    let msg = f["errorMessage"].as_str().unwrap();
    assert!(msg.contains("on the worker"), "{msg}");
    assert!(
        msg.contains("failing-on-the-worker-d1"),
        "the log tail: {msg}"
    );
    let got = read(&s, "/v1/images/ImgD1_IOC/main/rocky9");
    assert_eq!(got["digest"], v["digest"], "the previous entry stays");
}

#[test]
fn an_image_build_through_slurm() {
    on_executor(Executor::Slurm, || {
        let reg = Registry::start();
        let s = Server::start_with_env(
            &dispatch_config(&reg.addr()),
            &[("ARTIFACT_STORE_IMAGE__EXECUTOR", "slurm")],
        );
        let df = dockerfile("RUN echo 'built in a slurm job (d2)' > /where.txt\n");
        let (status, v, _) = post_form(
            &s,
            "/v1/images?wait=true",
            form("ImgD2_IOC", "dev", "rocky9", &df, None),
        );
        assert_eq!(status, 200, "{v}");
        let repo = "imgd2-ioc-dev-image";
        assert_pushed(&v, &reg.addr(), repo, "rocky9");
        let id = v["job"].as_str().unwrap();
        let log = job_log(&s, id);
        assert!(log.contains("handed to slurm as job "), "{log}");
        assert!(log.contains("worker on "), "{log}");
        let job = assert_job_success(&s, id);
        assert_eq!(job["steps"][0]["name"], "dispatch image ImgD2_IOC dev");
        assert_eq!(reg.catalog(), vec![repo.to_owned()]);
        let immutable = v["immutableName"].as_str().unwrap();
        podman_ok(&["rmi", "-f", immutable, v["imageName"].as_str().unwrap()]);
        let by_digest = format!("{}/{repo}@{}", reg.addr(), v["digest"].as_str().unwrap());
        assert_eq!(
            pulled(&by_digest, "/where.txt"),
            "built in a slurm job (d2)\n"
        );
    });
}

/// PUTs `body` to a worker route with `token`.
fn put_json(s: &Server, path: &str, token: &str, body: &Value) -> (u16, Value) {
    json_of(
        client()
            .put(s.url(path))
            .header("Authorization", bearer(token))
            .json(body)
            .send()
            .unwrap(),
    )
}

#[test]
fn a_worker_report_is_checked_in_the_registry() {
    let reg = Registry::start();
    let s = Server::start_with_env(
        &dispatch_config(&reg.addr()),
        &[("ARTIFACT_STORE_IMAGE__EXECUTOR", "worker")],
    );
    let df = dockerfile("RUN echo d3 > /d3.txt\n");
    let id = start_image(&s, "ImgD3_IOC", &df, None);
    // handed over: it waits for a polling worker
    wait_log(&s, &id, "waiting for a worker");
    let claim = |kinds: Value| {
        client()
            .post(s.url("/v1/workers/claim"))
            .header("Authorization", bearer(WRITE_KEY))
            .json(&json!({"worker": "probe", "arch": ["rocky9"], "kinds": kinds}))
            .send()
            .unwrap()
    };
    // a worker without podman does not get it; an unknown kind is refused
    assert_eq!(claim(json!(["build"])).status(), 204);
    let (status, v) = json_of(claim(json!(["images"])));
    assert_error(status, &v, 400, "'images' is not a kind of build");
    // claimed as a polling worker with podman would: the job and its token
    let (status, c) = json_of(claim(json!(["build", "image"])));
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["job"], id.as_str());
    let token = c["token"].as_str().unwrap().to_owned();

    // the spec is an image build; its context is a blob the token fetches
    let (status, spec) = json_of(
        client()
            .get(s.url(&format!("/v1/jobs/{id}/spec")))
            .header("Authorization", bearer(&token))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{spec}");
    assert!(spec["spec"].is_null(), "{spec}");
    let image = &spec["image"];
    assert_eq!(image["component"], "ImgD3_IOC");
    assert_eq!(image["registry"], reg.addr());
    let context = image["context"].as_str().unwrap();
    assert_eq!(spec["blobs"][0]["blake3"], context);
    let r = client()
        .get(s.url(&format!("/v1/blobs/{context}")))
        .header("Authorization", bearer(&token))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().unwrap();
    assert_eq!(blake3::hash(&body).to_hex().as_str(), context);
    let files = read_tar(&body, false);
    let df_in = files
        .iter()
        .find(|(p, _)| p == "image/Dockerfile")
        .unwrap_or_else(|| panic!("no image/Dockerfile in {files:?}"));
    assert_eq!(df_in.1, df.as_bytes());

    // the context is no job's record, yet GC keeps it while the job needs it
    assert!(gc(&s).is_empty());
    let job = wait_for_state(&s, &id, "running");
    assert!(
        !job.to_string().contains(context),
        "readers of the job do not learn the context blob: {job}"
    );

    // what the registry does not hold is refused, and nothing is indexed
    let made_up = format!("sha256:{}", "0".repeat(64));
    let path = format!("/v1/jobs/{id}/image");
    let (status, v) = put_json(
        &s,
        &path,
        &token,
        &json!({"image_id": "x", "digest": made_up, "size": 1}),
    );
    assert_error(status, &v, 422, "is not in the registry");
    // the moving tag still names an earlier build: its digest is not this one's
    let earlier_dir = tempfile::tempdir().unwrap();
    let earlier_df = earlier_dir.path().join("Dockerfile");
    std::fs::write(&earlier_df, dockerfile("RUN echo earlier-d3 > /e.txt\n")).unwrap();
    let moving = image["image"].as_str().unwrap();
    let dir = earlier_dir.path().to_str().unwrap();
    podman_ok(&["build", "--isolation", "chroot", "-t", moving, dir]);
    let digest_file = earlier_dir.path().join("digest");
    podman_ok(&[
        "push",
        "--tls-verify=false",
        "--digestfile",
        digest_file.to_str().unwrap(),
        moving,
    ]);
    let earlier = std::fs::read_to_string(&digest_file).unwrap();
    let (status, v) = put_json(
        &s,
        &path,
        &token,
        &json!({"image_id": "x", "digest": earlier.trim(), "size": 1}),
    );
    assert_error(status, &v, 422, "is not in the registry");
    let (status, v) = put_json(
        &s,
        &path,
        &token,
        &json!({"image_id": "x", "digest": "latest", "size": 1}),
    );
    assert_error(status, &v, 422, "is not a manifest digest");
    let (status, v) = put_json(&s, &path, &token, &json!({"image_id": "x", "size": 1}));
    assert_error(status, &v, 422, "is not a manifest digest");
    let (status, _) = get_json(&s, "/v1/images/ImgD3_IOC/main/rocky9");
    assert_eq!(status, 404, "nothing indexed");

    // an image build's token stores no component
    let r = client()
        .put(s.url(&format!("/v1/jobs/{id}/result")))
        .header("Authorization", bearer(&token))
        .header("content-type", "application/zstd")
        .body(vec![0u8; 16])
        .send()
        .unwrap();
    let (status, v) = json_of(r);
    assert_error(status, &v, 409, "is an image build");
    // nor reports for another job
    let (status, v) = put_json(
        &s,
        "/v1/jobs/someotherjob/image",
        &token,
        &json!({"image_id": "x", "digest": made_up, "size": 1}),
    );
    assert_eq!(status, 403, "{v}");

    // cancelled: the token is dead
    let r = client()
        .delete(s.url(&format!("/v1/jobs/{id}")))
        .header("Authorization", bearer(WRITE_KEY))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let job = wait_job(&s, &id);
    assert_eq!(job["state"], "cancelled", "{job}");
    let (status, v) = put_json(
        &s,
        &path,
        &token,
        &json!({"image_id": "x", "digest": made_up, "size": 1}),
    );
    assert_eq!(status, 403, "{v}");
    // the job ended: its context goes with the next GC pass
    assert_eq!(gc(&s), vec![context.to_owned()]);
}

/// The job, once in `state`.
fn wait_for_state(s: &Server, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = get_json(s, &format!("/v1/jobs/{id}"));
        assert_eq!(status, 200, "{v}");
        if v["job"]["state"] == state {
            return v["job"].clone();
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_worker_executor_without_a_registry_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, image_config("executor = \"slurm\"\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .arg("--config")
        .arg(&cfg)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("image.executor = \"slurm\" needs image.registry"),
        "{err}"
    );
}

#[test]
fn the_service_restarted_during_a_slurm_image_build_records_it_once() {
    on_executor(Executor::Slurm, || {
        let reg = Registry::start();
        let tmp = tempfile::tempdir().unwrap();
        let cfg = dispatch_config(&reg.addr());
        let env = [("ARTIFACT_STORE_IMAGE__EXECUTOR", "slurm")];
        let mut s = Server::start_in_env(tmp.path(), &cfg, &env);
        let df = dockerfile("RUN sleep 6 && echo 'built across a restart (d4)' > /d4.txt\n");
        let id = start_image(&s, "ImgD4_IOC", &df, None);
        // podman runs the RUN step on the Slurm node: the service goes away
        wait_log(&s, &id, "STEP 2/2");
        let port = s.base.rsplit(':').next().unwrap().to_owned();
        s.kill();
        let s = Server::start_on(tmp.path(), &cfg, &env, &format!("127.0.0.1:{port}"));
        let j = wait_job(&s, &id);
        let log = job_log(&s, &id);
        assert_eq!(j["state"], "success", "{j}\n{log}");
        assert_eq!(log.matches("handed to slurm as job").count(), 1, "{log}");
        assert!(log.contains("following slurm job"), "{log}");
        let sbatched = slurm::cluster()
            .run("scontrol", &["show", "job", "-o"])
            .lines()
            .filter(|l| l.contains(&format!("JobName=adbs-{id} ")))
            .count();
        assert_eq!(sbatched, 1, "the image was built twice");
        let (status, got) = get_json(&s, "/v1/images/ImgD4_IOC/main/rocky9");
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["digest"], j["result"]["image"]["digest"], "{j}");
        let digest = got["digest"].as_str().unwrap();
        let by_digest = format!("{}/imgd4-ioc-main-image@{digest}", reg.addr());
        assert_eq!(
            pulled(&by_digest, "/d4.txt"),
            "built across a restart (d4)\n"
        );
    });
}

/// A small image built, pushed and indexed with podman on the service's
/// host and through Slurm: the whole `?wait=true` request (printed for the
/// notes; asserted with slack for a loaded 2-core test machine).
#[test]
fn image_dispatch_overhead_local_vs_slurm() {
    let reg = Registry::start();
    let local = Server::start_with(&dispatch_config(&reg.addr()));
    let mut slurm = None;
    on_executor(Executor::Slurm, || {
        slurm = Some(Server::start_with_env(
            &dispatch_config(&reg.addr()),
            &[("ARTIFACT_STORE_IMAGE__EXECUTOR", "slurm")],
        ))
    });
    let slurm = slurm.expect("started");
    let runs = 3;
    let mut med = Vec::new();
    for (k, s) in [("local", &local), ("slurm", &slurm)] {
        let mut took = Vec::new();
        for r in 0..runs {
            let df = dockerfile(&format!("RUN echo {k}-{r} > /run.txt\n"));
            let (status, v, t) = post_form(
                s,
                "/v1/images?wait=true",
                form(&format!("ImgD5{k}{r}_IOC"), "main", "rocky9", &df, None),
            );
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["location"], "registry", "{v}");
            took.push(t.as_secs_f64());
        }
        took.sort_by(|a, b| a.total_cmp(b));
        eprintln!("image dispatch: {k}: request to indexed {took:.3?} s");
        med.push(took[runs / 2]);
    }
    let added = med[1] - med[0];
    eprintln!(
        "image dispatch: median local {:.3} s, slurm {:.3} s: Slurm adds {added:.3} s",
        med[0], med[1]
    );
    assert!(added < 10.0, "Slurm adds {added:.3} s to an image build");
}

#[test]
fn an_image_build_waiting_for_a_polling_worker_survives_a_restart() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = dispatch_config(&reg.addr());
    let env = [("ARTIFACT_STORE_IMAGE__EXECUTOR", "worker")];
    let mut s = Server::start_in_env(tmp.path(), &cfg, &env);
    let df = dockerfile("COPY in.txt /in.txt\n");
    let ctx = tar_gz("", &[("in.txt", b"kept across a restart (d6)\n")]);
    let id = start_image(&s, "ImgD6_IOC", &df, Some(&ctx));
    wait_log(&s, &id, "waiting for a worker");
    // the upload's replica goes away before any worker claimed the build
    let port = s.base.rsplit(':').next().unwrap().to_owned();
    s.kill();
    let s = Server::start_on(tmp.path(), &cfg, &env, &format!("127.0.0.1:{port}"));
    let _worker = Killed(polling_worker(&s, "img-vm6"));
    let j = wait_job(&s, &id);
    let log = job_log(&s, &id);
    assert_eq!(j["state"], "success", "{j}\n{log}");
    assert!(log.contains("waiting again for a worker"), "{log}");
    assert!(log.contains("claimed by worker img-vm6"), "{log}");
    let digest = j["result"]["image"]["digest"].as_str().unwrap();
    let by_digest = format!("{}/imgd6-ioc-main-image@{digest}", reg.addr());
    assert_eq!(
        pulled(&by_digest, "/in.txt"),
        "kept across a restart (d6)\n"
    );
}

#[test]
fn a_registry_that_wants_credentials_the_service_lacks_fails_closed() {
    let reg = Registry::start_with_password("pusher", "s3cret-d7");
    // the worker's podman has the credentials (an authfile on the node)
    let auth = tempfile::tempdir().unwrap();
    let authfile = auth.path().join("auth.json");
    let authfile = authfile.to_str().unwrap();
    podman_ok(&[
        "login",
        "--tls-verify=false",
        "--authfile",
        authfile,
        "-u",
        "pusher",
        "-p",
        "s3cret-d7",
        &reg.addr(),
    ]);
    let cfg = format!(
        "{}[image]\nregistry = \"{}\"\ntls_verify = false\npodman_push = [\"podman\", \"push\", \"--authfile\", \"{authfile}\"]\n",
        config_with_keys("[build]\nworker_keys = [\"ci\"]\n"),
        reg.addr()
    );
    let env = [("ARTIFACT_STORE_IMAGE__EXECUTOR", "worker")];
    let s = Server::start_with_env(&cfg, &env);
    let worker = Killed(polling_worker(&s, "img-vm7"));
    let df = dockerfile("RUN echo d7 > /d7.txt\n");
    let (status, v, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form("ImgD7_IOC", "main", "rocky9", &df, None),
    );
    assert_error(status, &v, 422, "wants credentials");
    let msg = v["errorMessage"].as_str().unwrap();
    assert!(msg.contains("image.verify_push = false"), "{msg}");
    let (status, _) = get_json(&s, "/v1/images/ImgD7_IOC/main/rocky9");
    assert_eq!(status, 404, "nothing indexed");
    drop(worker);

    // the operator's choice: reports taken unchecked
    let s = Server::start_with_env(
        &cfg,
        &[
            ("ARTIFACT_STORE_IMAGE__EXECUTOR", "worker"),
            ("ARTIFACT_STORE_IMAGE__VERIFY_PUSH", "false"),
        ],
    );
    let _worker = Killed(polling_worker(&s, "img-vm7"));
    let (status, v, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form("ImgD7_IOC", "main", "rocky9", &df, None),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["location"], "registry", "{v}");
}
