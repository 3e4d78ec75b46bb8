//! A throwaway one-node Slurm cluster for the tests: one per test binary
//! (plus private ones for tests that restart daemons), with Debian's
//! binaries (`apt-get install --no-install-recommends slurmctld slurmd
//! slurm-client slurmrestd slurm-wlm-jwt-plugin munge`). Everything is its
//! own: a munge key and `munged` on its own socket, a `slurm.conf` with a
//! unique cluster name, node name and free loopback ports, state, spool,
//! pid and log files in a temp dir. Clients reach it through
//! `SLURM_CONF` ([`Slurm::env`]), never `/etc/slurm`; the munge socket is
//! named in `slurm.conf` (`AuthInfo=socket=...`), so clients need nothing
//! else. Jobs run as root, the tests' user. The daemons die with the test
//! process; jobs left running are killed at exit, and the leftovers of a
//! killed run by the next one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// What to install when a binary or plugin is missing.
pub const PACKAGES: &str = "apt-get install --no-install-recommends \
     slurmctld slurmd slurm-client slurmrestd slurm-wlm-jwt-plugin munge";

/// The newest REST API version Slurm 22.05's `slurmrestd` serves
/// (it has v0.0.36 to v0.0.38).
pub const REST_API: &str = "v0.0.38";

/// The partition every job goes to by default.
pub const PARTITION: &str = "debug";

/// Job states after which a job does not change any more.
pub const FINAL_STATES: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
];

/// How many jobs may share a CPU (`OverSubscribe=FORCE:<n>`): the tests
/// run jobs side by side on a machine of few cores.
pub const OVERSUBSCRIBE: u32 = 8;

/// How long a finished job stays visible to `scontrol show job`
/// (`MinJobAge`, seconds); there is no accounting database to ask later.
pub const MIN_JOB_AGE: u32 = 600;

static SHARED: OnceLock<Slurm> = OnceLock::new();
static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
/// The directories of the clusters this process runs (stopped at exit).
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

/// The test binary's cluster, started on first use.
pub fn cluster() -> &'static Slurm {
    SHARED.get_or_init(Slurm::start)
}

/// At exit: kills every daemon and job of the clusters still running and
/// removes their directories.
extern "C" fn stop_at_exit() {
    let dirs = match LIVE.try_lock() {
        Ok(mut l) => std::mem::take(&mut *l),
        Err(_) => return,
    };
    for d in dirs {
        kill_cluster_processes(&d);
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// A daemon started from a thread that never exits (its death signal is
/// tied to that thread, so the daemon dies with the test process).
struct Daemon {
    name: &'static str,
    pid: AtomicU32,
    /// Whether the current process has exited (replaced at each start).
    exited: Mutex<Arc<AtomicBool>>,
}

impl Daemon {
    /// A daemon not started yet.
    fn new(name: &'static str) -> Daemon {
        Daemon {
            name,
            pid: AtomicU32::new(0),
            exited: Mutex::new(Arc::new(AtomicBool::new(true))),
        }
    }

    /// Starts `cmd` (the daemon's previous process, if any, has exited).
    fn spawn(&self, mut cmd: Command) {
        // SAFETY: prctl only, between fork and exec
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let exited = Arc::new(AtomicBool::new(false));
        *self.exited.lock().expect("daemon") = exited.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("slurm-{}", self.name))
            .spawn(move || {
                match cmd.spawn() {
                    Ok(mut child) => {
                        let _ = tx.send(Ok(child.id()));
                        let _ = child.wait();
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
                exited.store(true, Ordering::SeqCst);
                // never exit: the daemon's death signal is tied to this thread
                loop {
                    std::thread::park();
                }
            })
            .expect("start a daemon's thread");
        match rx.recv() {
            Ok(Ok(pid)) => self.pid.store(pid, Ordering::SeqCst),
            Ok(Err(e)) => panic!("cannot start {}: {e}", self.name),
            Err(_) => panic!("the thread starting {} died", self.name),
        }
    }

    fn running(&self) -> bool {
        !self.exited.lock().expect("daemon").load(Ordering::SeqCst)
    }

    /// Sends `signal` and waits up to `wait` for the process to end;
    /// whether it ended.
    fn stop(&self, signal: libc::c_int, wait: Duration) -> bool {
        let pid = self.pid.load(Ordering::SeqCst);
        if pid != 0 && self.running() {
            // SAFETY: a signal to a process this harness started
            unsafe { libc::kill(pid as libc::pid_t, signal) };
        }
        let deadline = Instant::now() + wait;
        while self.running() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

/// The absolute paths of the programs the cluster needs.
struct Programs {
    munged: PathBuf,
    slurmctld: PathBuf,
    slurmd: PathBuf,
    slurmrestd: Option<PathBuf>,
    bin: HashMap<&'static str, PathBuf>,
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn missing(what: &str) -> ! {
    panic!(
        "these tests need a Slurm cluster, and {what} is missing: install Slurm and munge \
         with `{PACKAGES}`"
    )
}

impl Programs {
    fn find() -> Programs {
        let need = |n: &str| which(n).unwrap_or_else(|| missing(&format!("`{n}`")));
        let mut bin = HashMap::new();
        for n in ["sbatch", "scontrol", "sinfo", "squeue", "scancel"] {
            bin.insert(n, need(n));
        }
        // AuthAltTypes=auth/jwt (for slurmrestd) needs this plugin in
        // slurmctld, else it does not start
        let jwt = glob::glob("/usr/lib/*/slurm-wlm/auth_jwt.so")
            .into_iter()
            .flatten()
            .flatten()
            .chain(
                glob::glob("/usr/lib*/slurm/auth_jwt.so")
                    .into_iter()
                    .flatten()
                    .flatten(),
            )
            .next();
        if jwt.is_none() {
            missing("Slurm's JWT plugin (auth_jwt.so, package slurm-wlm-jwt-plugin)");
        }
        Programs {
            munged: need("munged"),
            slurmctld: need("slurmctld"),
            slurmd: need("slurmd"),
            slurmrestd: which("slurmrestd"),
            bin,
        }
    }
}

/// The host's short name (what `slurmctld` compares `SlurmctldHost` with).
fn short_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer and its length
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname failed");
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    name.split('.').next().unwrap_or_default().to_owned()
}

/// Slurm resolves "127.0.0.1" with AI_ADDRCONFIG, which glibc refuses
/// when no IPv4 address but 127.0.0.1 is configured (a network namespace
/// with only `lo`).
fn check_loopback_lookup() {
    // SAFETY: hints zeroed then filled; the result is freed
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_flags = libc::AI_ADDRCONFIG | libc::AI_NUMERICSERV;
        hints.ai_family = libc::AF_UNSPEC;
        hints.ai_socktype = libc::SOCK_STREAM;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        let rc = libc::getaddrinfo(c"127.0.0.1".as_ptr(), c"6817".as_ptr(), &hints, &mut res);
        if rc == 0 {
            libc::freeaddrinfo(res);
            return;
        }
    }
    panic!(
        "Slurm cannot resolve 127.0.0.1 on this machine: glibc's address lookup \
         (AI_ADDRCONFIG) ignores 127.0.0.1 when it is the only IPv4 address, as in a \
         network namespace with only `lo`; add another loopback address, e.g. \
         `ip addr add 127.0.0.2/8 dev lo`"
    );
}

/// Free loopback TCP ports, all distinct.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("find a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("port").port())
        .collect()
}

/// Whether every directory from `/` to `dir` lets others in (`slurmrestd`
/// reads `slurm.conf` as `nobody`).
fn world_traversable(dir: &Path) -> bool {
    dir.ancestors().all(|d| {
        d.metadata()
            .is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    })
}

/// Where the clusters' directories go: under the target's temp dir when it
/// is short enough for unix socket paths and open to `nobody`, else the
/// system's temp dir.
fn base_dir() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::create_dir_all(&target);
    if target.as_os_str().len() <= 60 && world_traversable(&target) {
        target
    } else {
        std::env::temp_dir()
    }
}

/// Processes (pid → parent pid) and those whose environment holds `marker`.
fn processes_marked(marker: &[u8]) -> (HashMap<u32, u32>, Vec<u32>) {
    let mut parents = HashMap::new();
    let mut marked = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0);
        parents.insert(pid, ppid);
        let mut env = Vec::new();
        if std::fs::File::open(e.path().join("environ"))
            .and_then(|mut f| f.read_to_end(&mut env))
            .is_ok()
            && env.split(|&b| b == 0).any(|v| v == marker)
        {
            marked.push(pid);
        }
    }
    (parents, marked)
}

/// Kills (SIGKILL) every process of the cluster in `dir`: the daemons and
/// the `slurmstepd`s (all started with `SLURM_CONF=<dir>/slurm.conf` in
/// their environment), the jobs, and everything they started.
fn kill_cluster_processes(dir: &Path) {
    let marker = format!("SLURM_CONF={}", dir.join("slurm.conf").display());
    let me = std::process::id();
    // twice: a job may fork while the first sweep runs
    for _ in 0..2 {
        let (parents, marked) = processes_marked(marker.as_bytes());
        let mut doomed: HashSet<u32> = marked.into_iter().filter(|&p| p != me).collect();
        loop {
            let more: Vec<u32> = parents
                .iter()
                .filter(|(p, pp)| doomed.contains(pp) && !doomed.contains(p) && **p != me)
                .map(|(p, _)| *p)
                .collect();
            if more.is_empty() {
                break;
            }
            doomed.extend(more);
        }
        for p in &doomed {
            // SAFETY: a signal to a process of this harness's cluster
            unsafe { libc::kill(*p as libc::pid_t, libc::SIGKILL) };
        }
        if doomed.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes the clusters whose test process is gone: kills what is left of
/// them (jobs, `slurmstepd`s), then their directories.
fn remove_stale(base: &Path) {
    for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("slurm-"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            kill_cluster_processes(&e.path());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn random_file(path: &Path, len: usize, mode: u32) {
    let mut key = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .expect("read /dev/urandom");
    std::fs::write(path, &key).expect("write a key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod a key");
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The `slurmrestd` of a cluster.
pub struct Rest {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    daemon: Daemon,
}

pub struct Slurm {
    /// The cluster's directory: `slurm.conf`, keys, state, spool, logs,
    /// and `jobs/<id>.out` (the output of jobs from [`Slurm::sbatch`]).
    pub dir: PathBuf,
    pub cluster: String,
    /// The one node's name.
    pub node: String,
    /// This host's short name (`SlurmctldHost`, `NodeHostname`).
    pub host: String,
    pub controller_port: u16,
    pub node_port: u16,
    /// The node's CPUs and memory (MiB): the machine's.
    pub cpus: usize,
    pub memory_mb: u64,
    programs: Programs,
    munged: Daemon,
    slurmctld: Daemon,
    slurmd: Daemon,
    rest: OnceLock<Rest>,
}

impl Drop for Slurm {
    fn drop(&mut self) {
        if let Some(r) = self.rest.get() {
            r.daemon.stop(libc::SIGKILL, Duration::from_secs(5));
        }
        for d in [&self.slurmd, &self.slurmctld, &self.munged] {
            d.stop(libc::SIGKILL, Duration::from_secs(5));
        }
        kill_cluster_processes(&self.dir);
        if let Ok(mut l) = LIVE.lock() {
            l.retain(|d| d != &self.dir);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Splits a line of `scontrol show ... -o` into its fields (a value with
/// spaces, such as a command, keeps them).
pub fn parse_fields(line: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut last: Option<String> = None;
    for tok in line.split(' ').filter(|t| !t.is_empty()) {
        match tok.split_once('=') {
            Some((k, v))
                if !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_:/".contains(c)) =>
            {
                fields.insert(k.to_owned(), v.to_owned());
                last = Some(k.to_owned());
            }
            _ => {
                if let Some(v) = last.as_ref().and_then(|k| fields.get_mut(k)) {
                    v.push(' ');
                    v.push_str(tok);
                }
            }
        }
    }
    fields
}

/// Errors of a client that a controller (re)starting explains.
fn transient(stderr: &str) -> bool {
    [
        "Unable to contact slurm controller",
        "Socket timed out",
        "Connection refused",
        "Zero Bytes were transmitted",
    ]
    .iter()
    .any(|m| stderr.contains(m))
}

impl Slurm {
    /// A cluster of the caller's own (stopped when dropped): for tests
    /// that restart or break daemons. Other tests share [`cluster`].
    pub fn start() -> Slurm {
        let programs = Programs::find();
        check_loopback_lookup();
        let base = base_dir();
        remove_stale(&base);
        let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let dir = base.join(format!("slurm-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["state", "spool", "jobs"] {
            std::fs::create_dir_all(dir.join(d)).expect("create the cluster's directory");
        }
        // slurmrestd runs as `nobody` and reads slurm.conf; the keys stay
        // root's alone
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        AT_EXIT.call_once(|| {
            // SAFETY: registers a plain function
            unsafe { libc::atexit(stop_at_exit) };
        });
        LIVE.lock().expect("clusters").push(dir.clone());
        random_file(&dir.join("munge.key"), 1024, 0o400);
        random_file(&dir.join("jwt.key"), 32, 0o600);
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let memory_mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let kb = m.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
                kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
            })
            .map(|kb| kb / 1024)
            .unwrap_or(4096)
            .max(1024);
        let s = Slurm {
            cluster: format!("t{pid}x{n}"),
            node: format!("n{pid}x{n}"),
            host: short_hostname(),
            controller_port: 0,
            node_port: 0,
            cpus,
            memory_mb,
            dir,
            programs,
            munged: Daemon::new("munged"),
            slurmctld: Daemon::new("slurmctld"),
            slurmd: Daemon::new("slurmd"),
            rest: OnceLock::new(),
        };
        s.start_munged();
        s.boot()
    }

    /// Starts slurmctld and slurmd on free ports, and waits for the node
    /// to be idle.
    fn boot(mut self) -> Slurm {
        let mut last_error = String::new();
        // a port taken between finding and binding: try others
        for _ in 0..3 {
            let ports = free_ports(2);
            self.controller_port = ports[0];
            self.node_port = ports[1];
            std::fs::write(self.conf_path(), self.conf()).expect("write slurm.conf");
            self.slurmctld.spawn(self.slurmctld_command());
            if let Err(e) = self.wait_controller(Duration::from_secs(60)) {
                last_error = e;
                self.slurmctld.stop(libc::SIGKILL, Duration::from_secs(10));
                continue;
            }
            self.slurmd.spawn(self.slurmd_command());
            match self.wait_idle(Duration::from_secs(60)) {
                Ok(()) => return self,
                Err(e) => {
                    last_error = e;
                    self.slurmd.stop(libc::SIGKILL, Duration::from_secs(10));
                    self.slurmctld.stop(libc::SIGKILL, Duration::from_secs(10));
                }
            }
        }
        panic!("the test Slurm cluster did not start: {last_error}")
    }

    fn start_munged(&self) {
        let dir = &self.dir;
        let log = std::fs::File::create(dir.join("munged.log")).expect("munged log");
        let socket = self.munge_socket();
        let mut cmd = Command::new(&self.programs.munged);
        // --force: as root, and with the socket in a directory that is not
        // munge's own
        cmd.arg("--foreground")
            .arg("--force")
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--key-file={}", dir.join("munge.key").display()))
            .arg(format!("--pid-file={}", dir.join("munged.pid").display()))
            .arg(format!("--seed-file={}", dir.join("munged.seed").display()))
            .arg(format!("--log-file={}", dir.join("munged.log").display()))
            .env("SLURM_CONF", self.conf_path())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.munged.spawn(cmd);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            assert!(
                self.munged.running(),
                "munged exited at start; its log:\n{}",
                tail(&dir.join("munged.log"), 30)
            );
            assert!(
                Instant::now() < deadline,
                "munged did not create its socket within 30 s; its log:\n{}",
                tail(&dir.join("munged.log"), 30)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A daemon's command: in the foreground, on this cluster's config,
    /// `SLURM_CONF` in its environment (inherited by the `slurmstepd`s,
    /// which is how the harness finds them), its stderr appended to
    /// `<name>.stderr`.
    fn daemon_command(&self, program: &Path, name: &str) -> Command {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.stderr")))
            .expect("a daemon's stderr file");
        let mut cmd = Command::new(program);
        cmd.arg("-D")
            .arg("-f")
            .arg(self.conf_path())
            .env("SLURM_CONF", self.conf_path())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        cmd
    }

    fn slurmctld_command(&self) -> Command {
        self.daemon_command(&self.programs.slurmctld, "slurmctld")
    }

    fn slurmd_command(&self) -> Command {
        let mut cmd = self.daemon_command(&self.programs.slurmd, "slurmd");
        cmd.arg("-N").arg(&self.node);
        cmd
    }

    /// The cluster's `slurm.conf`.
    fn conf(&self) -> String {
        let d = self.dir.display();
        let (cluster, host, node) = (&self.cluster, &self.host, &self.node);
        let (cport, dport) = (self.controller_port, self.node_port);
        let (cpus, mem) = (self.cpus, self.memory_mb);
        format!(
            "# A one-node Slurm cluster of artifact-store's tests (tests/common/slurm.rs)
ClusterName={cluster}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={cport}
SlurmdPort={dport}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.sock
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key={d}/jwt.key
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge={MIN_JOB_AGE}
OverTimeLimit=0
KillWait=2
MessageTimeout=10
SlurmdTimeout=60
NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE OverSubscribe=FORCE:{OVERSUBSCRIBE} State=UP
"
        )
    }

    /// Waits until `scontrol ping` says the controller is up.
    fn wait_controller(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if !self.slurmctld.running() {
                return Err(format!("slurmctld exited at start\n{}", self.logs()));
            }
            let out = self.command("scontrol").arg("ping").output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("is UP")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "slurmctld did not answer within {within:?}\n{}",
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `sinfo` shows the node idle.
    fn wait_idle(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let mut state = String::new();
        loop {
            if !self.slurmd.running() {
                return Err(format!("slurmd exited at start\n{}", self.logs()));
            }
            if let Ok(o) = self
                .command("sinfo")
                .args(["-h", "-n", &self.node, "-o", "%T"])
                .output()
            {
                state = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                if state == "idle" {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {} is {state:?}, not idle, after {within:?}\n{}",
                    self.node,
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the daemons' logs (for failure messages).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for f in [
            "slurmctld.log",
            "slurmctld.stderr",
            "slurmd.log",
            "slurmd.stderr",
            "slurmrestd.log",
            "munged.log",
        ] {
            let t = tail(&self.dir.join(f), 15);
            if !t.is_empty() {
                out.push_str(&format!("--- {f} ---\n{t}\n"));
            }
        }
        out
    }

    /// The cluster's `slurm.conf`.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    /// The socket of the cluster's `munged`.
    pub fn munge_socket(&self) -> PathBuf {
        self.dir.join("munge.sock")
    }

    /// The partition jobs go to by default.
    pub fn partition(&self) -> &'static str {
        PARTITION
    }

    /// What a Slurm client needs in its environment to use this cluster:
    /// `SLURM_CONF` (which names the munge socket).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![(
            "SLURM_CONF".to_owned(),
            self.conf_path().display().to_string(),
        )]
    }

    /// A Slurm client (`sbatch`, `scontrol`, ...) on this cluster, without
    /// the `SLURM_*`/`SBATCH_*`... variables of the tests' environment.
    pub fn command(&self, program: &str) -> Command {
        let path = self
            .programs
            .bin
            .get(program)
            .cloned()
            .or_else(|| which(program))
            .unwrap_or_else(|| missing(&format!("`{program}`")));
        let mut c = Command::new(path);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if [
                "SLURM_",
                "SBATCH_",
                "SQUEUE_",
                "SINFO_",
                "SCONTROL_",
                "SCANCEL_",
            ]
            .iter()
            .any(|p| k.starts_with(p))
            {
                c.env_remove(OsStr::new(k.as_ref()));
            }
        }
        c.envs(self.env()).stdin(Stdio::null());
        c
    }

    /// Runs a client; its stdout. A client that cannot reach the
    /// controller (restarting) is retried for a minute; any other failure
    /// panics with its message.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self
                .command(program)
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() {
                return stdout;
            }
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            if !transient(&stderr) || Instant::now() > deadline {
                panic!(
                    "`{program} {}` failed ({}): {}{stdout}\n{}",
                    args.join(" "),
                    out.status,
                    stderr.trim(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Submits `command` (`sbatch --wrap`) with these extra options; the
    /// job id. Its output goes to [`Slurm::output`] unless `args` say
    /// otherwise.
    pub fn sbatch(&self, args: &[&str], command: &str) -> u32 {
        let output = format!("--output={}/jobs/%j.out", self.dir.display());
        let wrap = format!("--wrap={command}");
        let mut all = vec!["--parsable", output.as_str()];
        all.extend_from_slice(args);
        all.push(&wrap);
        let out = self.run("sbatch", &all);
        // "<id>" or "<id>;<cluster>"
        out.trim()
            .split(';')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("sbatch printed no job id: {out:?}"))
    }

    /// `sbatch --wrap <command>`: the job id.
    pub fn sbatch_wrap(&self, command: &str) -> u32 {
        self.sbatch(&[], command)
    }

    /// What a job from [`Slurm::sbatch`] printed (stdout and stderr).
    pub fn output(&self, id: u32) -> String {
        std::fs::read_to_string(self.dir.join("jobs").join(format!("{id}.out"))).unwrap_or_default()
    }

    /// A job's fields (`scontrol show job -o`): JobState, ExitCode,
    /// Reason, TimeLimit, WorkDir, ...
    pub fn job(&self, id: u32) -> BTreeMap<String, String> {
        let out = self.run("scontrol", &["show", "job", "-o", &id.to_string()]);
        let fields = parse_fields(out.lines().next().unwrap_or_default());
        assert!(
            fields.contains_key("JobState"),
            "scontrol shows no state for job {id}: {out:?}"
        );
        fields
    }

    /// A job's state (PENDING, RUNNING, COMPLETED, FAILED, ...).
    pub fn state(&self, id: u32) -> String {
        self.job(id)["JobState"].clone()
    }

    /// Polls a job until its state passes `want`, `within` at most; that
    /// state.
    pub fn wait_for(&self, id: u32, within: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let state = self.state(id);
            if want(&state) {
                return state;
            }
            if Instant::now() > deadline {
                panic!(
                    "job {id} is still {state} after {within:?}: {:?}\n{}",
                    self.job(id),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits (five minutes at most) for a job to end: its final state
    /// (COMPLETED, FAILED, CANCELLED, TIMEOUT, ...).
    pub fn wait_state(&self, id: u32) -> String {
        self.wait_for(id, Duration::from_secs(300), |s| FINAL_STATES.contains(&s))
    }

    /// Cancels a job.
    pub fn scancel(&self, id: u32) {
        self.run("scancel", &[&id.to_string()]);
    }

    /// Stops slurmctld (SIGTERM: it saves its state) and starts it again;
    /// waits until it answers. Running jobs carry on.
    pub fn restart_controller(&self) {
        assert!(
            self.slurmctld.stop(libc::SIGTERM, Duration::from_secs(30)),
            "slurmctld did not stop within 30 s of SIGTERM"
        );
        self.slurmctld.spawn(self.slurmctld_command());
        self.wait_controller(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("slurmctld did not come back: {e}"));
    }

    /// The cluster's `slurmrestd`, started on first use: HTTP on a free
    /// loopback port, JWT authentication (headers `X-SLURM-USER-NAME` and
    /// `X-SLURM-USER-TOKEN` from [`Slurm::rest_token`]), API [`REST_API`].
    pub fn rest(&self) -> &Rest {
        self.rest.get_or_init(|| self.start_rest())
    }

    /// `http://127.0.0.1:<port>` of [`Slurm::rest`].
    pub fn rest_url(&self) -> String {
        self.rest().url.clone()
    }

    /// A JWT for `user` (valid a day), for `X-SLURM-USER-TOKEN`.
    pub fn rest_token(&self, user: &str) -> String {
        let out = self.run(
            "scontrol",
            &["token", &format!("username={user}"), "lifespan=86400"],
        );
        out.trim()
            .strip_prefix("SLURM_JWT=")
            .unwrap_or_else(|| panic!("scontrol token printed no token: {out:?}"))
            .to_owned()
    }

    fn start_rest(&self) -> Rest {
        let bin = self
            .programs
            .slurmrestd
            .clone()
            .unwrap_or_else(|| missing("`slurmrestd`"));
        let daemon = Daemon::new("slurmrestd");
        for _ in 0..3 {
            let port = free_ports(1)[0];
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("slurmrestd.log"))
                .expect("slurmrestd log");
            let mut cmd = Command::new(&bin);
            // it refuses to run as root: `-u` switches to nobody before it
            // reads slurm.conf; SLURM_JWT=daemon: it passes on the
            // callers' tokens, no munge
            cmd.arg("-f")
                .arg(self.conf_path())
                .args(["-u", "nobody", "-s", &format!("openapi/{REST_API}")])
                .args(["-a", "rest_auth/jwt", &format!("127.0.0.1:{port}")])
                .env("SLURM_CONF", self.conf_path())
                .env("SLURM_JWT", "daemon")
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            daemon.spawn(cmd);
            let deadline = Instant::now() + Duration::from_secs(30);
            while daemon.running() && Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Rest {
                        url: format!("http://127.0.0.1:{port}"),
                        daemon,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            daemon.stop(libc::SIGKILL, Duration::from_secs(10));
        }
        panic!("slurmrestd did not start\n{}", self.logs())
    }
}
