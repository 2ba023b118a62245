//! The PostgreSQL cluster of a benchmark run: the tests' throwaway cluster (initdb into a temporary directory on
//! the same file system as the harness's SQLite stores, Unix socket only, fsync and synchronous_commit on),
//! configured for measuring, and what it can tell about where the time goes: the CPU time of all its processes,
//! its WAL writes and fsyncs, and per-statement counts.

use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use super::{proc_cpu, test_cluster};

/// How long the backends of stopped servers may take to go.
const BACKENDS_DEADLINE: Duration = Duration::from_secs(30);

/// A running cluster, stopped and removed when dropped (and by its watchdog if this process dies first).
pub struct PgCluster {
    cluster: test_cluster::Cluster,
}

/// The cluster-wide WAL counters of `pg_stat_wal` (PostgreSQL 14 to 17).
#[derive(Clone, Copy, Debug, Default)]
pub struct WalStats {
    /// WAL records written.
    pub records: f64,
    /// WAL bytes written.
    pub bytes: f64,
    /// Writes of WAL buffers to disk.
    pub writes: f64,
    /// fsyncs (fdatasync) of WAL files.
    pub syncs: f64,
    /// Seconds spent writing WAL (needs `track_wal_io_timing`, which the cluster turns on).
    pub write_seconds: f64,
    /// Seconds spent in WAL fsyncs: the commit wait of durable commits.
    pub sync_seconds: f64,
}

impl WalStats {
    /// What was counted between `before` and `self`.
    pub fn since(&self, before: &WalStats) -> WalStats {
        WalStats {
            records: self.records - before.records,
            bytes: self.bytes - before.bytes,
            writes: self.writes - before.writes,
            syncs: self.syncs - before.syncs,
            write_seconds: self.write_seconds - before.write_seconds,
            sync_seconds: self.sync_seconds - before.sync_seconds,
        }
    }
}

/// One statement's counts in `pg_stat_statements`.
#[derive(Clone, Debug)]
pub struct StatementStats {
    /// Times executed.
    pub calls: u64,
    /// Milliseconds of execution in the server, all calls.
    pub total_ms: f64,
    /// Rows returned or affected, all calls.
    pub rows: u64,
    /// The statement's text, white space collapsed, cut at 100 characters.
    pub query: String,
}

impl PgCluster {
    /// Starts a cluster configured for measuring; `None` (after printing `SKIPPED (PostgreSQL not installed)`)
    /// without PostgreSQL.
    ///
    /// Beyond the tests' settings: PostgreSQL's default `shared_buffers` (128 MB; the tests use 16 MB),
    /// `track_wal_io_timing` (to time the WAL's fsyncs), and `pg_stat_statements` loaded but tracking nothing
    /// until a database asks with [`PgCluster::fresh_database_with_statements`], so that timed runs do not pay
    /// for it.
    pub fn start() -> Option<PgCluster> {
        let cluster = test_cluster::start_private()?;
        cluster.psql(
            "postgres",
            "ALTER SYSTEM SET shared_buffers = '128MB';
             ALTER SYSTEM SET track_wal_io_timing = on;
             ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';",
        );
        // shared_buffers and shared_preload_libraries take a restart.
        cluster.stop();
        cluster.start_again();
        cluster.psql(
            "postgres",
            "ALTER SYSTEM SET pg_stat_statements.track = 'none';
             SELECT pg_reload_conf();
             CREATE EXTENSION pg_stat_statements;",
        );
        Some(PgCluster { cluster })
    }

    /// The directory the cluster lives in (data directory and Unix socket).
    pub fn dir(&self) -> &Path {
        self.cluster.socket_dir()
    }

    /// A new, empty database; its URL.
    pub fn fresh_database(&self) -> String {
        self.cluster.fresh_database()
    }

    /// A new, empty database whose connections' statements `pg_stat_statements` counts (top-level ones); its URL.
    pub fn fresh_database_with_statements(&self) -> String {
        let url = self.cluster.fresh_database();
        self.cluster.psql(
            "postgres",
            &format!(
                "ALTER DATABASE {} SET pg_stat_statements.track = 'top';",
                test_cluster::database_name(&url)
            ),
        );
        url
    }

    /// Runs `sql` in database `db` as the superuser; psql's unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.cluster.psql(db, sql)
    }

    /// CPU seconds (user and system) used so far by all the cluster's processes: the postmaster, its live
    /// children (backends, checkpointer, WAL writer, autovacuum…) and the children it has reaped.
    pub fn cpu_seconds(&self) -> f64 {
        let postmaster = self.postmaster_pid();
        let Some(main) = proc_cpu(postmaster) else {
            panic!("the PostgreSQL postmaster (pid {postmaster}) is gone");
        };
        let children: f64 = fs::read_dir("/proc")
            .expect("read /proc")
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(proc_cpu)
            .filter(|cpu| cpu.parent == postmaster)
            .map(|cpu| cpu.own)
            .sum();
        main.own + main.reaped_children + children
    }

    /// The postmaster's process id, from the data directory's `postmaster.pid`.
    fn postmaster_pid(&self) -> u32 {
        let file: PathBuf = self.dir().join("data").join("postmaster.pid");
        let text =
            fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        text.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("{} does not start with a pid", file.display()))
    }

    /// The cluster's WAL counters now.
    pub fn wal(&self) -> WalStats {
        let row = self.psql(
            "postgres",
            "SELECT wal_records, wal_bytes, wal_write, wal_sync, wal_write_time / 1000, wal_sync_time / 1000
             FROM pg_stat_wal;",
        );
        let values: Vec<f64> = row
            .trim()
            .split('|')
            .map(|v| v.parse().expect("a number from pg_stat_wal"))
            .collect();
        let [records, bytes, writes, syncs, write_seconds, sync_seconds] = values[..] else {
            panic!("pg_stat_wal gave {row:?}");
        };
        WalStats {
            records,
            bytes,
            writes,
            syncs,
            write_seconds,
            sync_seconds,
        }
    }

    /// Transactions committed so far in the database at `url`.
    pub fn commits(&self, url: &str) -> u64 {
        let db = test_cluster::database_name(url);
        self.psql(
            "postgres",
            &format!("SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}';"),
        )
        .trim()
        .parse()
        .expect("a count from pg_stat_database")
    }

    /// Waits until no backend is connected to the database at `url` (its servers have stopped and their
    /// backends have exited, which is when a backend's statistics are flushed to the shared counters).
    pub fn wait_until_idle(&self, url: &str) {
        let db = test_cluster::database_name(url);
        let deadline = Instant::now() + BACKENDS_DEADLINE;
        loop {
            let connected: u64 = self
                .psql(
                    "postgres",
                    &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}';"),
                )
                .trim()
                .parse()
                .expect("a count from pg_stat_activity");
            if connected == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{connected} backends still connected to {db}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes every dirty buffer out now, so that one run's checkpoint debt does not fall on the next.
    pub fn checkpoint(&self) {
        self.psql("postgres", "CHECKPOINT;");
    }

    /// The statements `pg_stat_statements` counted in the database at `url`, most execution time first.
    pub fn statements(&self, url: &str) -> Vec<StatementStats> {
        let db = test_cluster::database_name(url);
        let rows = self.psql(
            "postgres",
            &format!(
                "SELECT calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 100)
                 FROM pg_stat_statements
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{db}')
                 ORDER BY total_exec_time DESC;"
            ),
        );
        rows.lines()
            .filter(|line| !line.is_empty())
            .map(|line| {
                let mut fields = line.splitn(4, '|');
                let mut next = || fields.next().expect("four columns from pg_stat_statements");
                StatementStats {
                    calls: next().parse().expect("calls"),
                    total_ms: next().parse().expect("total_exec_time"),
                    rows: next().parse().expect("rows"),
                    query: next().to_owned(),
                }
            })
            .collect()
    }

    /// The PostgreSQL version the cluster runs, e.g. `PostgreSQL 15.18 (Debian 15.18-0+deb12u1)`.
    pub fn version(&self) -> String {
        self.psql("postgres", "SELECT version();")
            .split(" on ")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// A connection to the database at `url` with the `postgres` crate, over the cluster's Unix socket.
    pub fn connect(&self, url: &str) -> postgres::Client {
        postgres::Config::new()
            .host_path(self.dir())
            .port(5432)
            .user(test_cluster::SUPERUSER)
            .dbname(test_cluster::database_name(url))
            .connect(postgres::NoTls)
            .expect("connect to the benchmark cluster")
    }
}
