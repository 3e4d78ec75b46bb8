//! Kubernetes: each build is a `batch/v1` Job running `artifact-store
//! worker` in the arch's builder image, its token in a Secret of its own
//! (referenced by the pod, never in the Job's spec), with the resources,
//! a deadline a little past the build's timeout, no retries (the service
//! decides about retries), and `ttlSecondsAfterFinished`.
//!
//! The service talks to the API server from inside the cluster (its
//! service account: see `deploy/k8s/rbac.yaml`) with four REST calls —
//! create the Secret, create the Job, read the Job, delete both — made
//! with the HTTP client the service already has rather than the `kube`
//! crate (whose generated API types would double the build time for four
//! calls). What is verified here: the objects generated and the mapping
//! of a Job's status onto our states (unit tests below); the calls
//! themselves could not be run against an API server on these machines.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use super::{Engine, RemoteState, WorkerRun};
use crate::config::KubernetesConfig;

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub struct Kubernetes {
    cfg: KubernetesConfig,
}

/// The names of a run's objects (DNS-1123: lower case, digits, `-`).
pub fn names(run: &WorkerRun) -> (String, String) {
    let clean: String = run
        .job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let d: String = run.dispatch.chars().take(8).collect();
    (
        format!("adbs-{clean}-{d}"),
        format!("adbs-token-{clean}-{d}"),
    )
}

/// The Secret holding the worker's token.
/// The Secret holding a run's token, owned by its Job (`job_uid`) so that
/// it goes when the Job does (`ttlSecondsAfterFinished`).
pub fn secret_manifest(cfg: &KubernetesConfig, run: &WorkerRun, job_uid: &str) -> Value {
    let (job, secret) = names(run);
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret,
            "namespace": cfg.namespace,
            "labels": {"app.kubernetes.io/managed-by": "artifact-store", "artifact-store/job": job},
            "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": job_uid,
            }],
        },
        "type": "Opaque",
        "stringData": {"token": run.token},
    })
}

/// The Job running the worker.
pub fn job_manifest(cfg: &KubernetesConfig, run: &WorkerRun) -> Value {
    let (name, secret) = names(run);
    let image = run
        .image
        .clone()
        .or_else(|| cfg.image.clone())
        .unwrap_or_default();
    let mut args = run.args();
    args.insert(0, cfg.worker.clone());
    let mut pod = json!({
        "restartPolicy": "Never",
        // the worker needs no API access
        "automountServiceAccountToken": false,
        "containers": [{
            "name": "worker",
            "image": image,
            "command": args,
            "env": [
                {"name": "ARTIFACT_STORE_JOB_TOKEN",
                 "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}},
            ],
            "resources": {
                "requests": {"cpu": cfg.cpu, "memory": cfg.memory},
                "limits": {"cpu": cfg.cpu, "memory": cfg.memory},
            },
        }],
    });
    if let Some(sa) = &cfg.service_account {
        pod["serviceAccountName"] = json!(sa);
    }
    if !cfg.node_selector.is_empty() {
        pod["nodeSelector"] = json!(cfg.node_selector);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": cfg.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "artifact-store",
                "artifact-store/component": run.component,
                "artifact-store/arch": run.arch,
            },
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": run.timeout.as_secs() + 300,
            "ttlSecondsAfterFinished": cfg.ttl_seconds_after_finished,
            "template": {"metadata": {"labels": {"artifact-store/job": name}}, "spec": pod},
        },
    })
}

/// A Job's status mapped onto our states.
pub fn state_of(job: &Value) -> RemoteState {
    let status = &job["status"];
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    for c in &conditions {
        if c["status"] != "True" {
            continue;
        }
        let reason = c["reason"].as_str().unwrap_or("");
        let message = c["message"].as_str().unwrap_or("");
        match c["type"].as_str() {
            Some("Complete") | Some("SuccessCriteriaMet") => return RemoteState::Completed,
            Some("Failed") if reason == "DeadlineExceeded" => return RemoteState::TimedOut,
            Some("Failed") => {
                return RemoteState::Failed(format!(
                    "Kubernetes reports the Job failed ({reason}{}{message})",
                    if message.is_empty() { "" } else { ": " }
                ))
            }
            _ => {}
        }
    }
    if status["active"].as_u64().unwrap_or(0) > 0 {
        // started pods are active; Kubernetes counts a pod pulling its
        // image as active too
        return RemoteState::Running;
    }
    if status["succeeded"].as_u64().unwrap_or(0) > 0 {
        return RemoteState::Completed;
    }
    if status["failed"].as_u64().unwrap_or(0) > 0 {
        return RemoteState::Failed("Kubernetes reports the worker's pod failed".into());
    }
    RemoteState::Pending
}

/// The in-cluster API server: its URL, the service account's token, its
/// CA.
struct Cluster {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Cluster {
    fn new() -> Result<Cluster, String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
            "the kubernetes executor runs inside a cluster (KUBERNETES_SERVICE_HOST is not set)"
                .to_owned()
        })?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let token = std::fs::read_to_string(format!("{SA_DIR}/token"))
            .map_err(|e| format!("the service account's token: {e}"))?;
        let ca = std::fs::read(format!("{SA_DIR}/ca.crt"))
            .map_err(|e| format!("the cluster's CA: {e}"))?;
        let ca =
            reqwest::Certificate::from_pem(&ca).map_err(|e| format!("the cluster's CA: {e}"))?;
        let http = reqwest::blocking::Client::builder()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(Cluster {
            base: format!("https://{host}:{port}"),
            token: token.trim().to_owned(),
            http,
        })
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let r = rb.send().map_err(|e| format!("the API server: {e}"))?;
        let status = r.status();
        let v: Value = r.json().unwrap_or(Value::Null);
        if status.is_success() {
            Ok(v)
        } else {
            Err(format!(
                "the API server answered {status}: {}",
                v["message"].as_str().unwrap_or("")
            ))
        }
    }
}

impl Kubernetes {
    pub fn new(cfg: KubernetesConfig) -> Self {
        Self { cfg }
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| e.to_string())?
    }
}

impl Engine for Kubernetes {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn submit<'a>(&'a self, run: &'a WorkerRun) -> BoxFuture<'a, Result<String, String>> {
        let (cfg, run) = (self.cfg.clone(), run.clone());
        Box::pin(Self::blocking(move || {
            let c = Cluster::new()?;
            let ns = &cfg.namespace;
            // the Job first: its Secret is owned by it (the pod waits for
            // the Secret to appear)
            let job = c.call(
                reqwest::Method::POST,
                &format!("/apis/batch/v1/namespaces/{ns}/jobs"),
                Some(&job_manifest(&cfg, &run)),
            )?;
            let uid = job["metadata"]["uid"]
                .as_str()
                .ok_or("the API server named no uid for the Job")?;
            c.call(
                reqwest::Method::POST,
                &format!("/api/v1/namespaces/{ns}/secrets"),
                Some(&secret_manifest(&cfg, &run, uid)),
            )?;
            Ok(names(&run).0)
        }))
    }

    fn state<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<RemoteState, String>> {
        let (ns, id) = (self.cfg.namespace.clone(), id.to_owned());
        Box::pin(Self::blocking(move || {
            let c = Cluster::new()?;
            match c.call(
                reqwest::Method::GET,
                &format!("/apis/batch/v1/namespaces/{ns}/jobs/{id}"),
                None,
            ) {
                Ok(v) => Ok(state_of(&v)),
                Err(e) if e.contains("404") => Ok(RemoteState::Lost(format!(
                    "Kubernetes no longer knows Job {id}"
                ))),
                Err(e) => Err(e),
            }
        }))
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), String>> {
        let (ns, id) = (self.cfg.namespace.clone(), id.to_owned());
        Box::pin(Self::blocking(move || {
            let c = Cluster::new()?;
            let bg = json!({"propagationPolicy": "Background"});
            c.call(
                reqwest::Method::DELETE,
                &format!("/apis/batch/v1/namespaces/{ns}/jobs/{id}"),
                Some(&bg),
            )?;
            let secret = id.replacen("adbs-", "adbs-token-", 1);
            let _ = c.call(
                reqwest::Method::DELETE,
                &format!("/api/v1/namespaces/{ns}/secrets/{secret}"),
                None,
            );
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> WorkerRun {
        WorkerRun {
            job: "0190ABCdef".into(),
            dispatch: "0123456789abcdef".into(),
            token: "adbsjob_secret".into(),
            server: "http://artifact-store.builds.svc:8080".into(),
            command: "/usr/local/bin/artifact-store".into(),
            component: "zlib".into(),
            tag: "v1.3.1".into(),
            arch: "rocky9".into(),
            cpus: 4,
            timeout: Duration::from_secs(3600),
            image: Some("ghcr.io/lab/rocky9-env:1".into()),
        }
    }

    #[test]
    fn the_job_runs_the_worker_with_its_token_from_a_secret() {
        let cfg = KubernetesConfig {
            namespace: "builds".into(),
            service_account: Some("builder".into()),
            ..Default::default()
        };
        let r = run();
        let j = job_manifest(&cfg, &r);
        let s = secret_manifest(&cfg, &r, "0b9e-uid");
        assert_eq!(j["apiVersion"], "batch/v1");
        assert_eq!(j["kind"], "Job");
        assert_eq!(j["metadata"]["name"], "adbs-0190abcdef-01234567");
        assert_eq!(j["metadata"]["namespace"], "builds");
        assert_eq!(j["spec"]["backoffLimit"], 0);
        assert_eq!(j["spec"]["activeDeadlineSeconds"], 3900);
        assert_eq!(j["spec"]["ttlSecondsAfterFinished"], 3600);
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["serviceAccountName"], "builder");
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "ghcr.io/lab/rocky9-env:1");
        assert_eq!(
            c["command"],
            json!([
                "/usr/local/bin/artifact-store",
                "worker",
                "--server",
                "http://artifact-store.builds.svc:8080",
                "--job",
                "0190ABCdef"
            ])
        );
        assert_eq!(
            c["env"][0]["valueFrom"]["secretKeyRef"],
            json!({"name": "adbs-token-0190abcdef-01234567", "key": "token"})
        );
        assert_eq!(c["resources"]["limits"]["cpu"], "2");
        // the secret is only in the Secret
        assert!(!j.to_string().contains("secret\""), "{j}");
        assert!(!j.to_string().contains("adbsjob_secret"));
        assert_eq!(s["kind"], "Secret");
        assert_eq!(s["stringData"]["token"], "adbsjob_secret");
        assert_eq!(s["metadata"]["name"], "adbs-token-0190abcdef-01234567");
        // it goes with its Job
        let owner = &s["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Job");
        assert_eq!(owner["name"], "adbs-0190abcdef-01234567");
        assert_eq!(owner["uid"], "0b9e-uid");
        assert_eq!(pod["automountServiceAccountToken"], false);
    }

    #[test]
    fn job_status_maps_onto_our_states() {
        let st = |v: Value| state_of(&json!({"status": v}));
        assert_eq!(st(json!({})), RemoteState::Pending);
        assert_eq!(st(json!({"active": 1})), RemoteState::Running);
        assert_eq!(
            st(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})),
            RemoteState::Completed
        );
        assert_eq!(
            st(
                json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]})
            ),
            RemoteState::TimedOut
        );
        assert!(matches!(
            st(json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]})),
            RemoteState::Failed(m) if m.contains("BackoffLimitExceeded")
        ));
        assert_eq!(
            st(json!({"active": 1, "conditions": [{"type": "Failed", "status": "False"}]})),
            RemoteState::Running
        );
    }
}
