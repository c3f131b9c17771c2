//! Repository URL -> rustic backend: a local directory, or `s3://bucket/prefix` through
//! opendal, with retries and credentials taken from the config or the AWS environment.

use std::collections::BTreeMap;

use rustic_backend::BackendOptions;
use rustic_core::RepositoryBackends;

use crate::{
    config::RepositoryConfig,
    error::{Error, Result},
    secret::SecretSource,
};

/// Whether `url` names an S3 repository.
#[must_use]
pub fn is_s3_url(url: &str) -> bool {
    url.starts_with("s3://")
}

/// Bytes this user may still write on the file system of a local repository (`location`,
/// or a path inside it); `None` for an S3 repository, or when the file system cannot be
/// asked. What `wal status`, `config check` and a base backup waiting for its WAL name
/// when wal-push cannot store a segment there.
#[must_use]
pub fn free_space(location: &str) -> Option<u64> {
    if is_s3_url(location) {
        return None;
    }
    let st = nix::sys::statvfs::statvfs(std::path::Path::new(location)).ok()?;
    Some(st.blocks_available().saturating_mul(st.fragment_size()))
}

/// When a local repository (`location`, or a path inside it) has less than two WAL
/// segments of `segment_size` free, so that wal-push cannot store the next one: what is
/// free, said as a note naming the file system. `None` otherwise, and for S3.
#[must_use]
pub fn wal_room_note(location: &str, segment_size: u64) -> Option<String> {
    let free = free_space(location).filter(|f| *f < 2 * segment_size.max(1))?;
    Some(format!(
        "the repository's file system ({location}) has {} free, less than two WAL segments: wal-push cannot store a segment there",
        bytesize::ByteSize::b(free)
    ))
}

/// The URL as it may be printed (never contains credentials: they are not part of it).
#[must_use]
pub fn describe_url(url: &str) -> String {
    url.to_string()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The tokio runtime under opendal's blocking S3 clients (one per process).
fn s3_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime for the S3 client")
    })
}

/// A blocking S3 client for `opts` (see [`s3_options`]) that fails a request stalled for
/// `timeout` (`io_timeout` for each read or write of its body) and retries a failed one
/// `retries` times: a stalled connection must fail rather than hang with nothing in the logs.
pub(crate) fn s3_operator(
    opts: BTreeMap<String, String>,
    timeout: std::time::Duration,
    io_timeout: std::time::Duration,
    retries: usize,
) -> std::result::Result<opendal::blocking::Operator, opendal::Error> {
    let _guard = s3_runtime().enter();
    let op = opendal::Operator::via_iter("s3", opts)?
        .layer(
            opendal::layers::TimeoutLayer::new()
                .with_timeout(timeout)
                .with_io_timeout(io_timeout),
        )
        .layer(
            opendal::layers::RetryLayer::new()
                .with_max_times(retries)
                .with_jitter(),
        );
    opendal::blocking::Operator::new(op)
}

/// Whether `url` has `user[:secret]@` in its authority (`s3://KEY:SECRET@bucket/…`,
/// `https://user:pw@host/…`).
#[must_use]
pub fn holds_credentials(url: &str) -> bool {
    // a bucket or host name has neither `:` nor `@`; a secret may hold `/`, so the text
    // before the first `@` counts too
    url.split_once("://").is_some_and(|(_, rest)| {
        let first = rest.split('/').next().unwrap_or_default();
        first.contains('@')
            || (url.starts_with("s3://") && first.contains(':'))
            || rest
                .split_once('@')
                .is_some_and(|(user, _)| user.contains(':'))
    })
}

/// The opendal S3 options for `url`, or `None` when it is not an S3 URL.
pub(crate) fn s3_options(
    url: &str,
    cfg: &RepositoryConfig,
) -> Result<Option<BTreeMap<String, String>>> {
    let Some(rest) = url.strip_prefix("s3://") else {
        return Ok(None);
    };
    if holds_credentials(url) {
        return Err(crate::config::credentials_in_url("the repository URL"));
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(
            Error::config(format!("repository url {url:?} names no bucket"))
                .hint("write s3://BUCKET/PREFIX"),
        );
    }
    let mut o = BTreeMap::new();
    o.insert("bucket".to_string(), bucket.to_string());
    o.insert("root".to_string(), format!("/{}", prefix.trim_matches('/')));
    let endpoint = cfg
        .endpoint
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"));
    if let Some(e) = endpoint {
        o.insert("endpoint".to_string(), e);
    }
    let region = cfg
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    o.insert("region".to_string(), region);
    match cfg
        .access_key_id
        .clone()
        .or_else(|| env("AWS_ACCESS_KEY_ID"))
    {
        Some(key_id) => {
            // the secret from where the key id came: a configured key id with a configured
            // secret is one pair, and a stale AWS_SECRET_ACCESS_KEY left in an operator's
            // shell (for another account) must not be matched with it
            let pair_in_config = cfg.access_key_id.is_some()
                && (cfg.secret_access_key_file.is_some()
                    || cfg.secret_access_key_command.is_some());
            let secret = SecretSource {
                env: (!pair_in_config).then(|| "AWS_SECRET_ACCESS_KEY".into()),
                file: cfg.secret_access_key_file.clone(),
                command: cfg.secret_access_key_command.clone(),
            }
            .resolve("S3 secret access key")?;
            o.insert("access_key_id".to_string(), key_id);
            o.insert("secret_access_key".to_string(), secret.expose().to_string());
            // temporary credentials (STS, SSO) come as a triple: the token belongs to the key id
            if let Some(token) = env("AWS_SESSION_TOKEN") {
                o.insert("session_token".to_string(), token);
            }
            // given keys are the only credentials: no file may override them
            o.insert("disable_config_load".to_string(), "true".to_string());
        }
        None => {
            // an AWS profile: the client reads ~/.aws/credentials and ~/.aws/config
            // (or AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE) itself
            let profile = cfg.profile.clone().or_else(|| env("AWS_PROFILE"));
            if profile.is_none() && !shared_credentials_exist() {
                return Err(Error::config("no S3 credentials").hint(
                    "set [repository] access_key_id with secret_access_key_file, \
                     AWS_ACCESS_KEY_ID with AWS_SECRET_ACCESS_KEY, or an AWS profile \
                     ([repository] profile or AWS_PROFILE, in ~/.aws/credentials)",
                ));
            }
            if let Some(p) = profile {
                o.insert("profile".to_string(), p);
            }
        }
    }
    // the instance-metadata lookup hangs where there is no cloud metadata service
    o.insert("disable_ec2_metadata".to_string(), "true".to_string());
    probe(o.get("endpoint").map_or_else(
        || format!("https://s3.{}.amazonaws.com", o["region"]),
        Clone::clone,
    ))?;
    Ok(Some(o))
}

/// Whether an AWS shared credentials file is there to read a default profile from.
fn shared_credentials_exist() -> bool {
    env("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials")))
        .is_some_and(|p| p.is_file())
}

/// Fails at once, naming the endpoint, when nothing accepts a connection there. The S3
/// client retries each request with backoff for about half a minute, and an operation
/// makes several: against a store that is down, every command would sit silent for
/// minutes before saying so. A short outage still passes: the probe tries three times.
fn probe(endpoint: String) -> Result<()> {
    // through a proxy the endpoint need not be reachable directly
    if [
        "https_proxy",
        "HTTPS_PROXY",
        "http_proxy",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ]
    .iter()
    .any(|v| env(v).is_some())
    {
        return Ok(());
    }
    // a WAL command opens the repository and the WAL store: one probe per endpoint is enough
    static REACHED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    if REACHED.lock().is_ok_and(|r| r.contains(&endpoint)) {
        return Ok(());
    }
    probe_direct(&endpoint)?;
    if let Ok(mut r) = REACHED.lock() {
        r.push(endpoint);
    }
    Ok(())
}

/// [`probe`] without looking for a proxy.
fn probe_direct(endpoint: &str) -> Result<()> {
    use std::net::{TcpStream, ToSocketAddrs};
    let Some(addr) = host_port(endpoint) else {
        return Err(
            Error::config(format!("S3 endpoint {endpoint:?} is not a URL"))
                .hint("write it as http(s)://HOST[:PORT]"),
        );
    };
    let timeout = std::time::Duration::from_secs(5);
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        match addr.to_socket_addrs() {
            Ok(addrs) => {
                for a in addrs {
                    match TcpStream::connect_timeout(&a, timeout) {
                        Ok(stream) => return answers(stream, &addr),
                        Err(e) => last = e.to_string(),
                    }
                }
            }
            Err(e) => last = format!("cannot resolve the name: {e}"),
        }
    }
    Err(
        Error::unavailable(format!("cannot reach the S3 endpoint {addr}: {last}")).hint(
            "check that the store is up and reachable from this host, and [repository] endpoint \
             (or AWS_ENDPOINT_URL); nothing was read or changed",
        ),
    )
}

/// How long a store that accepted the connection may take to say anything.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the server behind an accepted connection answers at all: a store (or a load
/// balancer in front of a dead one) that accepts connections and never replies would
/// otherwise hold every command until the requests time out, retries included. Any reply
/// counts, even a refusal or a TLS alert to the plain request, or closing the connection.
fn answers(mut stream: std::net::TcpStream, addr: &str) -> Result<()> {
    use std::io::{Read, Write};
    let silent = || {
        Error::unavailable(format!(
            "the S3 endpoint {addr} accepts connections but does not answer (nothing within {} s)",
            ANSWER_WITHIN.as_secs()
        ))
        .hint("the store (or a proxy or load balancer in front of it) is stalled: check it, and [repository] endpoint (or AWS_ENDPOINT_URL); nothing was read or changed")
    };
    let _ = stream.set_read_timeout(Some(ANSWER_WITHIN));
    let _ = stream.set_write_timeout(Some(ANSWER_WITHIN));
    if stream
        .write_all(format!("HEAD / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        // closed or reset at once: someone is there, and the real request will say more
        return Ok(());
    }
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(silent())
        }
        _ => Ok(()),
    }
}

/// `host:port` of an endpoint URL, the port from the scheme when it has none.
fn host_port(endpoint: &str) -> Option<String> {
    let u = url::Url::parse(endpoint).ok()?;
    let host = match u.host()? {
        url::Host::Ipv6(a) => format!("[{a}]"),
        h => h.to_string(),
    };
    Some(format!("{host}:{}", u.port_or_known_default()?))
}

/// Builds the backends for `url`.
pub(crate) fn backends(url: &str, cfg: &RepositoryConfig) -> Result<RepositoryBackends> {
    let mut opts = BackendOptions::default();
    if let Some(mut o) = s3_options(url, cfg)? {
        // a stalled store must fail a command in minutes, not in half an hour: each read
        // or write of data may wait 60 s for progress, each request is tried 4 times
        o.insert("retry".to_string(), "3".to_string());
        o.insert("io_timeout".to_string(), "60".to_string());
        opts.repository = Some("opendal:s3".to_string());
        opts.options = o;
    } else {
        opts.repository = Some(url.to_string());
    }
    Ok(opts.to_backends()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_refused_without_repeating_them() {
        assert!(holds_credentials("s3://AKIAXX:Inl1-SECRET@bucket/prod"));
        assert!(holds_credentials("https://user:pw@host/x"));
        // half of AWS secrets hold a slash
        assert!(holds_credentials("s3://AKIAXX:abc/def+ghi@bucket/prod"));
        assert!(holds_credentials("s3://AKIAXX:abc/def"));
        assert!(!holds_credentials("s3://bucket/prefix@2026"));
        assert!(!holds_credentials("/var/backups/a@b"));
        let e = s3_options(
            "s3://AKIAXX:Inl1-SECRET@bucket/prod",
            &RepositoryConfig::default(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        let said = format!("{e} {}", e.hint_text().unwrap_or_default());
        assert!(
            !said.contains("Inl1-SECRET") && !said.contains("AKIAXX"),
            "{said}"
        );
        let text = "[repository]\nurl = \"s3://AKIAXX:Inl1-SECRET@bucket/prod\"\n";
        let e = crate::config::Config::parse(text, "cfg.toml").unwrap_err();
        assert!(
            e.to_string()
                .contains("cfg.toml:2: repository.url holds credentials"),
            "{e}"
        );
        assert!(!e.to_string().contains("Inl1-SECRET"), "{e}");
    }

    #[test]
    fn endpoints_give_host_and_port() {
        assert_eq!(
            host_port("http://127.0.0.1:3900").as_deref(),
            Some("127.0.0.1:3900")
        );
        assert_eq!(
            host_port("https://s3.eu-west-1.amazonaws.com").as_deref(),
            Some("s3.eu-west-1.amazonaws.com:443")
        );
        assert_eq!(
            host_port("http://[::1]:9000/").as_deref(),
            Some("[::1]:9000")
        );
        assert_eq!(host_port("minio:9000"), None);
    }

    #[test]
    fn a_closed_endpoint_is_named_at_once() {
        // a port nothing listens on: bound, then released
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let e = probe_direct(&format!("http://127.0.0.1:{port}")).expect_err("refused");
        assert_eq!(e.kind(), crate::error::ErrorKind::Unavailable);
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
