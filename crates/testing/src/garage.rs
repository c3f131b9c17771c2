//! A real Garage S3 server for tests: one node in a temporary directory, on free ports of
//! 127.0.0.1, with a bucket and a key allowed on it.
//!
//! The binary comes from `LIFEBOAT_GARAGE_BIN` (set by `scripts/test.sh`, which builds or
//! finds it with `scripts/ensure-garage.sh`). Without it the harness panics: an S3 test that
//! silently skips would let S3 regressions through.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// Environment variable naming the Garage binary.
pub const GARAGE_BIN_ENV: &str = "LIFEBOAT_GARAGE_BIN";

/// How long the server may take to answer, and any one CLI call to finish.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// S3 region the server is configured with.
const REGION: &str = "garage";
/// Bucket created by [`Garage::start`].
const BUCKET: &str = "lifeboat-test";
/// Name of the key created by [`Garage::start`].
const KEY_NAME: &str = "lifeboat-test-key";

/// A running single-node Garage server; killed (by its pid) on drop.
pub struct Garage {
    dir: tempfile::TempDir,
    bin: PathBuf,
    config: PathBuf,
    server: Option<Child>,
    s3_port: u16,
    key_id: String,
    secret_key: String,
    /// Names output files of CLI calls so that none overwrites another's while it runs.
    calls: AtomicU32,
}

impl std::fmt::Debug for Garage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the secret key: test failures print Debug output
        f.debug_struct("Garage")
            .field("dir", &self.dir.path())
            .field("endpoint", &self.endpoint())
            .field("access_key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn garage_bin() -> PathBuf {
    let Some(value) = std::env::var_os(GARAGE_BIN_ENV).filter(|v| !v.is_empty()) else {
        panic!(
            "{GARAGE_BIN_ENV} is not set: the S3 tests need a Garage binary. Run them with \
             scripts/test.sh (it finds or builds Garage), or set \
             {GARAGE_BIN_ENV}=\"$(scripts/ensure-garage.sh)\""
        );
    };
    let bin = PathBuf::from(value);
    assert!(
        bin.is_file(),
        "{GARAGE_BIN_ENV}={} does not exist: run scripts/ensure-garage.sh (or scripts/test.sh) \
         to find or build Garage",
        bin.display()
    );
    bin
}

/// Three distinct free ports on 127.0.0.1 (all held at once so none is handed out twice).
fn free_ports() -> [u16; 3] {
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    let port = |i: usize| listeners[i].local_addr().expect("local address").port();
    [port(0), port(1), port(2)]
}

fn random_hex_32() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Last `n` lines of a file, for panic messages.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The value after `label` on the line that starts with it (`Key ID:   GK...`).
fn field(output: &str, label: &str) -> Option<String> {
    output.lines().find_map(|l| {
        l.trim()
            .strip_prefix(label)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    })
}

/// The 16-hex-digit node id in the first column of `garage status`.
fn node_id(status: &str) -> Option<String> {
    status.lines().find_map(|l| {
        let first = l.split_whitespace().next()?;
        (first.len() == 16 && first.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| first.to_string())
    })
}

impl Garage {
    /// Starts the server and prepares a bucket and a key with read, write and owner
    /// rights on it.
    ///
    /// # Panics
    ///
    /// When `LIFEBOAT_GARAGE_BIN` is unset or missing, or the server does not come up
    /// (the message carries the tail of its log).
    #[must_use]
    pub fn start() -> Self {
        let bin = garage_bin();
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-garage-")
            .tempdir()
            .expect("garage tempdir");
        let config = dir.path().join("garage.toml");
        let mut g = Self {
            dir,
            bin,
            config,
            server: None,
            s3_port: 0,
            key_id: String::new(),
            secret_key: String::new(),
            calls: AtomicU32::new(0),
        };
        // a port found free may be taken before Garage binds it: then try new ones
        let mut attempts = 0;
        loop {
            attempts += 1;
            match g.launch() {
                Ok(()) => break,
                Err(why) if attempts < 3 => {
                    eprintln!("garage: {why}; retrying on other ports");
                }
                Err(why) => panic!("{why}"),
            }
        }
        let status = g.cli(&["status"]);
        let node = node_id(&status)
            .unwrap_or_else(|| panic!("no node id in `garage status` output:\n{status}"));
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.cli(&["layout", "apply", "--version", "1"]);
        let key = g.cli(&["key", "create", KEY_NAME]);
        g.key_id = field(&key, "Key ID:")
            .unwrap_or_else(|| panic!("no Key ID in `garage key create` output:\n{key}"));
        g.secret_key = field(&key, "Secret key:").unwrap_or_else(|| {
            panic!("no Secret key in `garage key create` output (not shown: it holds secrets)")
        });
        g.create_bucket(BUCKET);
        g.wait_for_s3();
        g
    }

    /// Writes the config on fresh ports, starts the server and waits until it answers.
    fn launch(&mut self) -> Result<(), String> {
        let [rpc, s3, admin] = free_ports();
        self.s3_port = s3;
        let d = self.dir.path();
        let text = format!(
            "metadata_dir = {meta:?}\n\
             data_dir = {data:?}\n\
             db_engine = \"sqlite\"\n\
             replication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_secret = \"{secret}\"\n\
             \n\
             [s3_api]\n\
             s3_region = \"{REGION}\"\n\
             api_bind_addr = \"127.0.0.1:{s3}\"\n\
             root_domain = \".s3.garage.localhost\"\n\
             \n\
             [admin]\n\
             api_bind_addr = \"127.0.0.1:{admin}\"\n",
            meta = d.join("meta").display().to_string(),
            data = d.join("data").display().to_string(),
            secret = random_hex_32(),
        );
        std::fs::write(&self.config, text).expect("write garage.toml");
        let log_path = self.log_path();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("garage log file");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        self.server = Some(child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self
                .server
                .as_mut()
                .and_then(|c| c.try_wait().expect("poll garage server"))
            {
                self.server = None;
                return Err(format!(
                    "garage server exited ({status}) before answering; log {}:\n{}",
                    log_path.display(),
                    tail(&log_path, 20)
                ));
            }
            if self.try_cli(&["status"], Duration::from_secs(5)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "garage server did not answer `garage status` within {}s; log {}:\n{}",
                    STARTUP_TIMEOUT.as_secs(),
                    log_path.display(),
                    tail(&log_path, 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the S3 port accepts connections (it opens after the RPC port).
    fn wait_for_s3(&self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.s3_port));
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            assert!(
                Instant::now() < deadline,
                "garage S3 API on {addr} did not open within {}s; log:\n{}",
                STARTUP_TIMEOUT.as_secs(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `garage -c CONFIG args...`; its stdout and stderr, or why it failed.
    fn try_cli(&self, args: &[&str], timeout: Duration) -> Result<String, String> {
        // files, not pipes: a child blocked on a full pipe would look like a hang
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let out_path = self.dir.path().join(format!("cli-{n}.out"));
        let out = File::create(&out_path).expect("cli output file");
        let mut child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("cli output handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait().expect("poll garage cli") {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        let _ = std::fs::remove_file(&out_path);
        match status {
            Some(s) if s.success() => Ok(text),
            Some(s) => Err(format!("`garage {}` failed ({s}):\n{text}", args.join(" "))),
            None => Err(format!(
                "`garage {}` did not finish within {}s:\n{text}",
                args.join(" "),
                timeout.as_secs()
            )),
        }
    }

    /// Runs the garage CLI against this server (`garage -c CONFIG args...`) and returns
    /// its output, e.g. `cli(&["bucket", "info", "lifeboat-test"])`.
    ///
    /// # Panics
    ///
    /// When the command fails or runs longer than a minute; the message carries its
    /// output and the server log.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args, COMMAND_TIMEOUT).unwrap_or_else(|why| {
            panic!("{why}\nserver log:\n{}", self.log_tail());
        })
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("garage.log")
    }

    /// The last lines of the server's log.
    #[must_use]
    pub fn log_tail(&self) -> String {
        tail(&self.log_path(), 20)
    }

    /// Creates another bucket and allows the key read, write and owner rights on it.
    ///
    /// # Panics
    ///
    /// When Garage refuses (e.g. the bucket exists or the name is invalid).
    pub fn create_bucket(&self, name: &str) {
        self.cli(&["bucket", "create", name]);
        self.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", name, "--key", KEY_NAME,
        ]);
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT` (path-style addressing).
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The S3 region the server accepts.
    #[must_use]
    pub fn region(&self) -> &str {
        REGION
    }

    /// The bucket created at start.
    #[must_use]
    pub fn bucket(&self) -> &str {
        BUCKET
    }

    /// Access key id of the key allowed on every bucket made by this harness.
    #[must_use]
    pub fn access_key_id(&self) -> &str {
        &self.key_id
    }

    /// Secret access key of that key.
    #[must_use]
    pub fn secret_access_key(&self) -> &str {
        &self.secret_key
    }

    /// Body lines of a lifeboat `[repository]` table for `s3://BUCKET/prefix` on this
    /// server, writing the secret key into `secret_file` (mode 0600) for
    /// `secret_access_key_file`.
    ///
    /// # Panics
    ///
    /// When `secret_file` cannot be written.
    #[must_use]
    pub fn repository_toml(&self, prefix: &str, secret_file: &Path) -> String {
        lifeboat_core::secret::write_private_file(secret_file, &self.secret_key)
            .unwrap_or_else(|e| panic!("write {}: {e}", secret_file.display()));
        let url = format!("s3://{}/{}", self.bucket(), prefix.trim_matches('/'));
        format!(
            "url = {url:?}\nendpoint = {:?}\nregion = {:?}\naccess_key_id = {:?}\nsecret_access_key_file = {:?}\n",
            self.endpoint(),
            self.region(),
            self.access_key_id(),
            secret_file.display().to_string(),
        )
    }

    /// The temporary directory holding the config, the data and the log.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server (a store that has gone away); its data stays until drop.
    pub fn stop(&mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.server.take() {
            // Child::kill signals this child's pid only, never other garage processes
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cli_output() {
        let key = "==== ACCESS KEY INFORMATION ====\nKey ID:              GK81c37a\nKey name:            k\nSecret key:          2aec17\n";
        assert_eq!(field(key, "Key ID:").as_deref(), Some("GK81c37a"));
        assert_eq!(field(key, "Secret key:").as_deref(), Some("2aec17"));
        let status = "==== HEALTHY NODES ====\nID                Hostname  Address\n329ac0d493ac5639  vm        127.0.0.1:39011\n";
        assert_eq!(node_id(status).as_deref(), Some("329ac0d493ac5639"));
    }

    #[test]
    fn random_secret_is_64_hex() {
        let s = random_hex_32();
        assert_eq!(s.len(), 64);
        assert!(s.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(s, random_hex_32());
    }
}
