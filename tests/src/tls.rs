//! Certificates and a TLS terminator for tests of TLS to the servers: a test CA made with
//! `openssl` at test time (nothing checked in, nothing expiring in the repository), a server
//! certificate for `localhost` / `127.0.0.1` signed by it, and `socat` terminating TLS in
//! front of a plain TCP server (the local broker speaks plain AMQP only).
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use integration_tests::tls::{TestCa, TlsTerminator};
//! let ca = TestCa::new()?;
//! let amqps = TlsTerminator::start(&ca, "127.0.0.1:5672").await?;
//! let url = format!("amqps://guest:guest@localhost:{}/%2f", amqps.port());
//! // give the relay `--amqp-ca-file` = ca.ca_cert()
//! # Ok(())
//! # }
//! ```

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{free_local_addr, unique_suffix};

/// A certificate authority of the test's own, in a fresh temporary directory (removed on
/// drop): its certificate, and a server certificate and key for `localhost` and
/// `127.0.0.1` signed by it.
pub struct TestCa {
    dir: PathBuf,
}

impl TestCa {
    /// Makes the CA and the server certificate with `openssl` (RSA 2048, valid two days).
    pub fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("outbox-tls-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let ca = TestCa { dir };
        let name = ca
            .dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        openssl(
            &ca.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                &format!("/CN=outbox test CA {name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        )?;
        openssl(
            &ca.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        )?;
        std::fs::write(
            ca.dir.join("server.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )?;
        openssl(
            &ca.dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                "server.pem",
                "-extfile",
                "server.ext",
            ],
        )?;
        Ok(ca)
    }

    /// The CA certificate (PEM): what a client trusts.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server certificate (PEM) for `localhost` and `127.0.0.1`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The server certificate's private key (PEM, unencrypted).
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("run openssl")?;
    if !output.status.success() {
        bail!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// `socat` terminating TLS (the [`TestCa`]'s server certificate) on a free loopback port and
/// forwarding the plain bytes to `upstream`; killed on drop.
pub struct TlsTerminator {
    child: Child,
    port: u16,
}

impl TlsTerminator {
    /// Starts it; returns once the port accepts connections.
    pub async fn start(ca: &TestCa, upstream: &str) -> Result<Self> {
        let port = free_local_addr()?.port();
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,cert={},key={},verify=0,fork,reuseaddr",
            ca.server_cert().display(),
            ca.server_key().display()
        );
        // Its own process group: `fork` makes a child per connection, killed with it.
        let child = Command::new("socat")
            .args([listen.as_str(), &format!("TCP:{upstream}")])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start socat")?;
        let mut terminator = TlsTerminator { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = terminator.child.try_wait()? {
                bail!("socat exited: {status}");
            }
            if Instant::now() > deadline {
                bail!("socat does not listen on {port}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(terminator)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        // The group: socat and the children it forked for connections still open. Spelled
        // `-s KILL -- -PGID`: procps-ng 4.0.2 reads `kill -KILL -PGID` as `kill(-1, SIGKILL)`,
        // which kills every process the user may signal (as root: the whole machine).
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
