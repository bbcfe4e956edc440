//! A throw-away PostgreSQL cluster for one test: `initdb` and `pg_ctl` as the `postgres` user in
//! a temporary directory, listening on a free loopback port only, stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pg {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (apt-get install postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("no initdb under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
}

fn as_postgres(bin: &Path, tool: &str, args: &[&str]) -> String {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(tool))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Pg {
    pub fn start() -> Pg {
        Pg::start_with(false)
    }

    /// `fsync`: tests run without it (speed); a benchmark runs with it, as a server would.
    pub fn start_with(fsync: bool) -> Pg {
        let bin = bin_dir();
        let dir = super::temp_dir("pg");
        let st = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.join("data");
        as_postgres(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=200",
            dir.display(),
            if fsync { "on" } else { "off" }
        );
        let log = dir.join("log");
        as_postgres(
            &bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        let pg = Pg { dir, port, bin };
        as_postgres(
            &pg.bin,
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "jit",
            ],
        );
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/jit", self.port)
    }

    /// Runs SQL with psql, returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        as_postgres(
            &self.bin,
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "jit",
                "-Atc",
                sql,
            ],
        )
    }

    /// A data directory whose server.toml names this cluster.
    pub fn data_dir(&self) -> PathBuf {
        let data = super::temp_dir("pgdata");
        std::fs::write(
            data.join("server.toml"),
            format!("database = \"{}\"\n", self.url()),
        )
        .unwrap();
        data
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
