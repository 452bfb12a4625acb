//! The ledger on disk: one SQLite database (WAL, so that `detector inventory` and the `sqlite3`
//! tool read it while the agent writes), schema-versioned (`PRAGMA user_version`) with
//! forward migrations, marked as ours (`PRAGMA application_id`). A file that is no SQLite
//! database, another application's database, a ledger from a newer detector, or one that fails
//! SQLite's `quick_check` is never reset: it is moved aside (`<file>.bad-<unix time>`, with its
//! `-wal` and `-shm`) and reported in one sentence, and a new ledger starts.
//!
//! Writes come in batches: one transaction per batch ([`Store::save`]). With WAL and
//! `synchronous=NORMAL`, a committed batch survives the process being killed, and a kill at
//! any point leaves a consistent database (SQLite's own guarantee), so `kill -9` loses at most
//! the batch being built. Times are nanoseconds since the Unix epoch; the views (`v_*`)
//! render them as dates for people with `sqlite3`.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension as _};

use super::model::{
    Change, ChangeKind, Credential, Destination, Dirty, Dropped, FindingKind, FindingSeen,
    FingerprintSeen, Id, Model, OwnerSource, Stat, Usage, Writer,
};
use super::policy::PolicySummary;

/// `PRAGMA application_id` of a ledger ("dtlg").
pub(crate) const APPLICATION_ID: i32 = 0x6474_6c67;

/// The schema, one migration per version: version N is `MIGRATIONS[..N]` applied in order.
/// Never edit a released migration; add one.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Version 1: credentials, identities, programs, destinations, fingerprints, changes, uses,
/// reach, findings.
const V1: &str = "
CREATE TABLE credential (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    category TEXT NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    present INTEGER NOT NULL,
    owner TEXT,
    owner_source TEXT,
    fingerprint TEXT,
    mtime INTEGER,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    last_used INTEGER,
    uses INTEGER NOT NULL,
    writes INTEGER NOT NULL,
    last_write_ts INTEGER,
    last_write_identity TEXT,
    last_write_exe TEXT,
    last_write_uid INTEGER,
    rotations INTEGER NOT NULL,
    last_rotation INTEGER
);
CREATE TABLE credential_name (
    credential INTEGER NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (credential, name)
) WITHOUT ROWID;
CREATE TABLE identity (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE program (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE destination (
    id INTEGER PRIMARY KEY,
    addr TEXT NOT NULL,
    port INTEGER NOT NULL,
    name TEXT,
    UNIQUE (addr, port)
);
CREATE TABLE fingerprint (
    credential INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    superseded INTEGER,
    PRIMARY KEY (credential, fingerprint)
) WITHOUT ROWID;
CREATE INDEX fingerprint_by_value ON fingerprint (fingerprint);
CREATE TABLE change (
    id INTEGER PRIMARY KEY,
    credential INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    old_fingerprint TEXT,
    new_fingerprint TEXT,
    old_ino INTEGER,
    new_ino INTEGER,
    writer_ts INTEGER,
    writer_identity TEXT,
    writer_exe TEXT,
    writer_uid INTEGER
);
CREATE INDEX change_by_credential ON change (credential, ts);
CREATE TABLE usage (
    credential INTEGER NOT NULL,
    identity INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL,
    owned INTEGER,
    fingerprint TEXT,
    last_tgid INTEGER NOT NULL,
    last_start INTEGER NOT NULL,
    last_exe INTEGER NOT NULL,
    last_user TEXT,
    last_uid INTEGER NOT NULL,
    PRIMARY KEY (credential, identity)
) WITHOUT ROWID;
CREATE TABLE usage_program (
    credential INTEGER NOT NULL,
    identity INTEGER NOT NULL,
    exe INTEGER NOT NULL,
    parent INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (credential, identity, exe, parent)
) WITHOUT ROWID;
CREATE TABLE reach (
    credential INTEGER NOT NULL,
    identity INTEGER NOT NULL,
    destination INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (credential, identity, destination)
) WITHOUT ROWID;
CREATE TABLE finding (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    identity TEXT NOT NULL,
    credential INTEGER NOT NULL,
    first_raised INTEGER NOT NULL,
    last_raised INTEGER NOT NULL,
    raised INTEGER NOT NULL,
    suppressed INTEGER NOT NULL,
    PRIMARY KEY (kind, subject, identity)
) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
";

/// Version 2: declared contact and rotation policy per credential (identities.yaml
/// `credentials:`), counts of what retention dropped, and views for `sqlite3` users.
const V2: &str = "
ALTER TABLE credential ADD COLUMN contact TEXT;
ALTER TABLE credential ADD COLUMN rotate_every INTEGER;
ALTER TABLE credential ADD COLUMN dropped_uses INTEGER NOT NULL DEFAULT 0;
ALTER TABLE credential ADD COLUMN dropped_reach INTEGER NOT NULL DEFAULT 0;
CREATE VIEW v_usage AS
    SELECT c.path, c.category, i.name AS identity, u.count,
           datetime(u.first_seen / 1000000000, 'unixepoch') AS first_seen,
           datetime(u.last_seen / 1000000000, 'unixepoch') AS last_seen,
           CASE u.owned WHEN 1 THEN 'owner' WHEN 0 THEN 'NOT OWNER' ELSE 'unknown' END AS owner,
           p.path AS last_exe, u.last_user
    FROM usage u JOIN credential c ON c.id = u.credential
    JOIN identity i ON i.id = u.identity LEFT JOIN program p ON p.id = u.last_exe;
CREATE VIEW v_reach AS
    SELECT c.path, i.name AS identity, d.addr, d.port, d.name, r.count,
           datetime(r.last_seen / 1000000000, 'unixepoch') AS last_seen
    FROM reach r JOIN credential c ON c.id = r.credential
    JOIN identity i ON i.id = r.identity JOIN destination d ON d.id = r.destination;
CREATE VIEW v_shared AS
    SELECT c.path, count(*) AS identities, group_concat(i.name, ', ') AS used_by
    FROM usage u JOIN credential c ON c.id = u.credential JOIN identity i ON i.id = u.identity
    GROUP BY u.credential HAVING count(*) >= 2;
CREATE VIEW v_non_owner AS
    SELECT c.path, c.owner, i.name AS identity, u.count,
           datetime(u.last_seen / 1000000000, 'unixepoch') AS last_seen
    FROM usage u JOIN credential c ON c.id = u.credential JOIN identity i ON i.id = u.identity
    WHERE u.owned = 0;
CREATE VIEW v_unowned AS
    SELECT path, category, present FROM credential WHERE owner IS NULL;
CREATE VIEW v_changes AS
    SELECT c.path, ch.kind, datetime(ch.ts / 1000000000, 'unixepoch') AS at,
           ch.writer_identity, ch.writer_exe, ch.writer_uid
    FROM change ch JOIN credential c ON c.id = ch.credential;
";

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is not a ledger this build can use (it is moved aside by the writer).
    #[error("{path} is not a usable ledger ({reason})")]
    NotALedger {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// SQLite failed.
    #[error("{path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl StoreError {
    /// True when the disk (or the file system's quota) is full.
    pub(crate) fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite { source, .. } => {
                source.sqlite_error_code() == Some(ErrorCode::DiskFull)
            }
            StoreError::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
            StoreError::NotALedger { .. } => false,
        }
    }

    /// True when SQLite says the file is damaged or no database.
    pub(crate) fn is_corrupt(&self) -> bool {
        match self {
            StoreError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
            ),
            StoreError::NotALedger { .. } => true,
            StoreError::Io { .. } => false,
        }
    }
}

/// How a ledger was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// Schema version found (0: a new file).
    pub(crate) found_version: u32,
    /// Migrated to [`SCHEMA_VERSION`].
    pub(crate) migrated: bool,
    /// A bad file moved aside: where it went and why.
    pub(crate) set_aside: Option<(PathBuf, String)>,
}

/// The ledger database, open for writing (the agent's writer only).
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

fn sq(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks that `conn` holds a ledger (or nothing yet); returns its schema version.
fn check(conn: &Connection, path: &Path, quick_check: bool) -> Result<u32, StoreError> {
    let not = |reason: String| StoreError::NotALedger {
        path: path.to_path_buf(),
        reason,
    };
    let classify = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => not("not an SQLite database".into()),
        Some(ErrorCode::DatabaseCorrupt) => not(format!("damaged: {e}")),
        _ => sq(path)(e),
    };
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(classify)?;
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(classify)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(classify)?;
    if app != APPLICATION_ID && (app != 0 || tables > 0) {
        return Err(not(format!(
            "another application's SQLite database, application_id {app:#x}"
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(not(format!(
            "written by a newer detector: schema version {version}, this one knows up to {SCHEMA_VERSION}"
        )));
    }
    if quick_check {
        let msgs: Vec<String> = conn
            .prepare("PRAGMA quick_check")
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(classify)?;
        if msgs.first().map(String::as_str) != Some("ok") {
            return Err(not(format!("damaged: {}", msgs.join("; "))));
        }
    }
    Ok(version)
}

/// Applies the migrations after `from` up to `to`, one transaction each.
pub(crate) fn migrate(
    conn: &mut Connection,
    path: &Path,
    from: u32,
    to: u32,
) -> Result<(), StoreError> {
    let to = to.min(SCHEMA_VERSION);
    for v in from..to {
        let tx = conn.transaction().map_err(sq(path))?;
        if v == 0 {
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(sq(path))?;
        }
        tx.execute_batch(MIGRATIONS[v as usize]).map_err(sq(path))?;
        tx.pragma_update(None, "user_version", v + 1)
            .map_err(sq(path))?;
        tx.commit().map_err(sq(path))?;
    }
    Ok(())
}

/// Moves a bad ledger (and its `-wal`, `-shm`) aside; returns where it went.
pub(crate) fn set_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut to = PathBuf::from(format!("{}.bad-{secs}", path.display()));
    let mut n = 1;
    while to.exists() {
        to = PathBuf::from(format!("{}.bad-{secs}.{n}", path.display()));
        n += 1;
    }
    std::fs::rename(path, &to).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    for ext in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{ext}", path.display()));
        if side.exists() {
            let dest = PathBuf::from(format!("{}{ext}", to.display()));
            std::fs::rename(&side, &dest).map_err(|source| StoreError::Io {
                path: side.clone(),
                source,
            })?;
        }
    }
    Ok(to)
}

fn rw(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(sq(path))?;
    // Every statement of a batch stays prepared (a batch uses about twenty).
    conn.set_prepared_statement_cache_capacity(64);
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sq(path))?;
    Ok(conn)
}

impl Store {
    /// Opens (or creates) the ledger at `path` and migrates it to [`SCHEMA_VERSION`]. A file
    /// that is not a usable ledger is moved aside and a new one started; [`Opened`] says so.
    pub fn open(path: &Path) -> Result<(Store, Opened), StoreError> {
        let mut opened = Opened::default();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
        }
        let conn = rw(path)?;
        let (mut conn, version) = match check(&conn, path, true) {
            Ok(v) => (conn, v),
            Err(StoreError::NotALedger { reason, .. }) => {
                drop(conn);
                let to = set_aside(path)?;
                opened.set_aside = Some((to, reason));
                (rw(path)?, 0)
            }
            Err(e) => return Err(e),
        };
        Self::pragmas(&conn, path, version == 0)?;
        opened.found_version = version;
        if version < SCHEMA_VERSION {
            migrate(&mut conn, path, version, SCHEMA_VERSION)?;
            opened.migrated = version > 0;
        }
        // Restrict the file to root: it names every credential and who uses it.
        set_private(path);
        Ok((
            Store {
                conn,
                path: path.to_path_buf(),
            },
            opened,
        ))
    }

    /// Creates a ledger at an exact schema version (tests of migrations).
    pub fn create_at_version(path: &Path, version: u32) -> Result<Connection, StoreError> {
        let mut conn = rw(path)?;
        Self::pragmas(&conn, path, true)?;
        migrate(&mut conn, path, 0, version)?;
        Ok(conn)
    }

    fn pragmas(conn: &Connection, path: &Path, new: bool) -> Result<(), StoreError> {
        if new {
            // Only before the first table: lets retention give pages back to the file system.
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(sq(path))?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sq(path))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sq(path))?;
        // The WAL file shrinks back to this after a checkpoint.
        conn.pragma_update(None, "journal_size_limit", 16i64 << 20)
            .map_err(sq(path))?;
        // Checkpoint every 16 MiB of WAL rather than 4: pages that batches touch again and again
        // (credentials, uses) are copied to the database once per checkpoint.
        conn.pragma_update(None, "wal_autocheckpoint", 4096i64)
            .map_err(sq(path))?;
        // Batches touch pages all over the tables (uses, reach): keep them cached rather than
        // read them back from the file (SQLite's default is 2 MiB).
        conn.pragma_update(None, "cache_size", -16384i64)
            .map_err(sq(path))?;
        Ok(())
    }

    /// How long a write waits for a lock another connection holds.
    #[cfg(test)]
    pub(crate) fn set_busy_timeout(&self, d: std::time::Duration) {
        let _ = self.conn.busy_timeout(d);
    }

    /// Everything in the ledger.
    pub fn load(&self) -> Result<Model, StoreError> {
        load(&self.conn, &self.path)
    }

    /// Writes what the model changed since the last save in one transaction. On error nothing
    /// of this batch is written (the caller keeps `dirty` for the next try).
    pub(crate) fn save(&mut self, m: &Model, dirty: &Dirty) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = sq(&path);
        let tx = self.conn.transaction().map_err(&e)?;
        save(&tx, m, dirty).map_err(&e)?;
        tx.commit().map_err(&e)
    }

    /// Records the policy `detector inventory` judges with.
    pub(crate) fn save_policy(&mut self, p: &PolicySummary) -> Result<(), StoreError> {
        let v = serde_json::to_string(p).unwrap_or_default();
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('policy', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [v],
            )
            .map_err(sq(&self.path))
            .map(|_| ())
    }

    /// Bytes the database uses (pages in use).
    pub(crate) fn bytes(&self) -> Result<u64, StoreError> {
        let q = |p: &str| -> Result<i64, StoreError> {
            self.conn
                .query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                .map_err(sq(&self.path))
        };
        let used = q("page_count")? - q("freelist_count")?;
        Ok((used.max(0) as u64) * q("page_size")?.max(0) as u64)
    }

    /// Returns free pages to the file system and checkpoints the WAL.
    pub(crate) fn reclaim(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(sq(&self.path))
    }
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    for ext in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{ext}", path.display()));
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    }
}

/// Opens a ledger for reading only (`detector inventory`; the agent may be writing it). A
/// ledger of an older schema is migrated in a copy in memory, never in place.
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no ledger here (has the agent run with this state dir?)",
            ),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sq(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sq(path))?;
    let version = check(&conn, path, false)?;
    if version == SCHEMA_VERSION {
        return Ok(conn);
    }
    if version == 0 {
        return Err(StoreError::NotALedger {
            path: path.to_path_buf(),
            reason: "empty: no ledger written yet".into(),
        });
    }
    let mut mem = Connection::open_in_memory().map_err(sq(path))?;
    {
        let b = rusqlite::backup::Backup::new(&conn, &mut mem).map_err(sq(path))?;
        b.run_to_completion(256, std::time::Duration::ZERO, None)
            .map_err(sq(path))?;
    }
    migrate(&mut mem, path, version, SCHEMA_VERSION)?;
    Ok(mem)
}

/// The policy the agent recorded (defaults when none yet).
pub fn load_policy(conn: &Connection) -> PolicySummary {
    conn.query_row("SELECT value FROM meta WHERE key = 'policy'", [], |r| {
        r.get::<_, String>(0)
    })
    .optional()
    .ok()
    .flatten()
    .and_then(|v| serde_json::from_str(&v).ok())
    .unwrap_or_default()
}

// u64 values (times in ns, inodes) are stored bit for bit in SQLite's i64.
fn i(v: u64) -> i64 {
    v as i64
}
fn u(v: i64) -> u64 {
    v as u64
}
fn oi(v: Option<u64>) -> Option<i64> {
    v.map(i)
}
fn ou(v: Option<i64>) -> Option<u64> {
    v.map(u)
}

/// Reads the whole ledger into a model.
pub fn load(conn: &Connection, path: &Path) -> Result<Model, StoreError> {
    load_rows(conn).map_err(sq(path))
}

fn load_rows(conn: &Connection) -> rusqlite::Result<Model> {
    let mut m = Model::new();
    let mut names: std::collections::HashMap<Id, Vec<String>> = Default::default();
    {
        let mut s = conn.prepare("SELECT credential, name FROM credential_name")?;
        let rows = s.query_map([], |r| Ok((r.get::<_, Id>(0)?, r.get::<_, String>(1)?)))?;
        for r in rows {
            let (c, n) = r?;
            names.entry(c).or_default().push(n);
        }
    }
    {
        let mut s = conn.prepare(
            "SELECT id, path, category, dev, ino, present, owner, owner_source, fingerprint,
                    mtime, first_seen, last_seen, last_used, uses, writes, last_write_ts,
                    last_write_identity, last_write_exe, last_write_uid, rotations,
                    last_rotation, contact, rotate_every, dropped_uses, dropped_reach
             FROM credential ORDER BY id",
        )?;
        let rows = s.query_map([], |r| {
            let id: Id = r.get(0)?;
            let last_write = match r.get::<_, Option<i64>>(15)? {
                Some(ts) => Some(Writer {
                    ts: u(ts),
                    identity: r.get::<_, Option<String>>(16)?.unwrap_or_default(),
                    exe: r.get::<_, Option<String>>(17)?.unwrap_or_default(),
                    uid: r.get::<_, Option<u32>>(18)?.unwrap_or_default(),
                }),
                None => None,
            };
            Ok(Credential {
                id,
                path: r.get(1)?,
                category: r.get(2)?,
                dev: u(r.get(3)?),
                ino: u(r.get(4)?),
                names: Vec::new(),
                present: r.get(5)?,
                owner: r.get(6)?,
                owner_source: r
                    .get::<_, Option<String>>(7)?
                    .as_deref()
                    .and_then(OwnerSource::parse),
                contact: r.get(21)?,
                rotate_every: ou(r.get(22)?),
                fingerprint: r.get(8)?,
                mtime: ou(r.get(9)?),
                first_seen: u(r.get(10)?),
                last_seen: u(r.get(11)?),
                last_used: ou(r.get(12)?),
                uses: u(r.get(13)?),
                writes: u(r.get(14)?),
                last_write,
                rotations: u(r.get(19)?),
                last_rotation: ou(r.get(20)?),
                dropped_uses: u(r.get(23)?),
                dropped_reach: u(r.get(24)?),
            })
        })?;
        for r in rows {
            let mut c = r?;
            c.names = names.remove(&c.id).unwrap_or_default();
            m.load_credential(c);
        }
    }
    for (table, is_identity) in [("identity", true), ("program", false)] {
        let col = if is_identity { "name" } else { "path" };
        let mut s = conn.prepare(&format!("SELECT id, {col} FROM {table}"))?;
        let rows = s.query_map([], |r| Ok((r.get::<_, Id>(0)?, r.get::<_, String>(1)?)))?;
        for r in rows {
            let (id, n) = r?;
            if is_identity {
                m.identities.insert(id, n);
            } else {
                m.programs.insert(id, n);
            }
        }
    }
    {
        let mut s = conn.prepare("SELECT id, addr, port, name FROM destination")?;
        let rows = s.query_map([], |r| {
            Ok((
                r.get::<_, Id>(0)?,
                Destination {
                    addr: r.get(1)?,
                    port: r.get(2)?,
                    name: r.get(3)?,
                },
            ))
        })?;
        for r in rows {
            let (id, d) = r?;
            m.load_destination(id, d);
        }
    }
    {
        let mut s = conn.prepare(
            "SELECT credential, identity, first_seen, last_seen, count, owned, fingerprint,
                    last_tgid, last_start, last_exe, last_user, last_uid FROM usage",
        )?;
        let rows = s.query_map([], |r| {
            Ok((
                r.get::<_, Id>(0)?,
                r.get::<_, Id>(1)?,
                Usage {
                    stat: Stat {
                        first_seen: u(r.get(2)?),
                        last_seen: u(r.get(3)?),
                        count: u(r.get(4)?),
                    },
                    owned: r.get(5)?,
                    fingerprint: r.get(6)?,
                    last_tgid: r.get(7)?,
                    last_start: u(r.get(8)?),
                    last_exe: r.get(9)?,
                    last_user: r.get(10)?,
                    last_uid: r.get(11)?,
                },
            ))
        })?;
        for r in rows {
            let (c, id, us) = r?;
            m.load_usage(c, id, us);
        }
    }
    {
        let mut s = conn.prepare(
            "SELECT credential, identity, exe, parent, first_seen, last_seen, count
             FROM usage_program",
        )?;
        let rows = s.query_map([], |r| {
            Ok((
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?),
                stat(r.get(4)?, r.get(5)?, r.get(6)?),
            ))
        })?;
        for r in rows {
            let (k, st) = r?;
            m.load_program_of_usage(k, st);
        }
    }
    {
        let mut s = conn.prepare(
            "SELECT credential, identity, destination, first_seen, last_seen, count FROM reach",
        )?;
        let rows = s.query_map([], |r| {
            Ok((
                (r.get(0)?, r.get(1)?, r.get(2)?),
                stat(r.get(3)?, r.get(4)?, r.get(5)?),
            ))
        })?;
        for r in rows {
            let (k, st) = r?;
            m.load_reach(k, st);
        }
    }
    {
        let mut s = conn.prepare(
            "SELECT credential, fingerprint, first_seen, last_seen, superseded FROM fingerprint",
        )?;
        let rows = s.query_map([], |r| {
            Ok((
                r.get::<_, Id>(0)?,
                r.get::<_, String>(1)?,
                FingerprintSeen {
                    first_seen: u(r.get(2)?),
                    last_seen: u(r.get(3)?),
                    superseded: ou(r.get(4)?),
                },
            ))
        })?;
        for r in rows {
            let (c, fp, f) = r?;
            m.load_fingerprint(c, fp, f);
        }
    }
    {
        let mut s = conn.prepare(
            "SELECT id, credential, ts, kind, old_fingerprint, new_fingerprint, old_ino, new_ino,
                    writer_ts, writer_identity, writer_exe, writer_uid
             FROM change ORDER BY id",
        )?;
        let rows = s.query_map([], |r| {
            let writer = match r.get::<_, Option<i64>>(8)? {
                Some(ts) => Some(Writer {
                    ts: u(ts),
                    identity: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
                    exe: r.get::<_, Option<String>>(10)?.unwrap_or_default(),
                    uid: r.get::<_, Option<u32>>(11)?.unwrap_or_default(),
                }),
                None => None,
            };
            let kind: String = r.get(3)?;
            let Some(kind) = ChangeKind::parse(&kind) else {
                return Ok(None);
            };
            Ok(Some(Change {
                id: r.get(0)?,
                credential: r.get(1)?,
                ts: u(r.get(2)?),
                kind,
                old_fingerprint: r.get(4)?,
                new_fingerprint: r.get(5)?,
                old_ino: ou(r.get(6)?),
                new_ino: ou(r.get(7)?),
                writer,
            }))
        })?;
        for r in rows {
            // A kind this build does not know (a newer writer) is skipped, not fatal.
            if let Some(c) = r? {
                m.load_change(c);
            }
        }
    }
    {
        let mut s = conn.prepare(
            "SELECT kind, subject, identity, credential, first_raised, last_raised, raised,
                    suppressed FROM finding",
        )?;
        let rows = s.query_map([], |r| {
            let kind: String = r.get(0)?;
            Ok((
                FindingKind::parse(&kind),
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                FindingSeen {
                    credential: r.get(3)?,
                    first_raised: u(r.get(4)?),
                    last_raised: u(r.get(5)?),
                    raised: u(r.get(6)?),
                    suppressed: u(r.get(7)?),
                },
            ))
        })?;
        for r in rows {
            if let (Some(k), subject, identity, f) = r? {
                m.load_finding((k, subject, identity), f);
            }
        }
    }
    let dropped: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'dropped'", [], |r| {
            r.get(0)
        })
        .optional()?;
    m.dropped = dropped
        .and_then(|d| serde_json::from_str::<Dropped>(&d).ok())
        .unwrap_or_default();
    // The current fingerprint's last read is written only when it is replaced: it is the
    // credential's last use.
    m.settle_current_fingerprints();
    m.now = m
        .credentials
        .values()
        .map(|c| c.last_seen)
        .max()
        .unwrap_or(0);
    // Loading is no change.
    m.dirty = Dirty::default();
    Ok(m)
}

fn stat(first: i64, last: i64, count: i64) -> Stat {
    Stat {
        first_seen: u(first),
        last_seen: u(last),
        count: u(count),
    }
}

fn save(tx: &rusqlite::Transaction<'_>, m: &Model, d: &Dirty) -> rusqlite::Result<()> {
    let del = &d.deleted;
    for id in &del.credentials {
        tx.prepare_cached("DELETE FROM credential WHERE id = ?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM credential_name WHERE credential = ?1")?
            .execute([id])?;
    }
    for (c, id) in &del.usage {
        tx.prepare_cached("DELETE FROM usage WHERE credential = ?1 AND identity = ?2")?
            .execute([c, id])?;
    }
    for (c, id, e, p) in &del.programs_of_usage {
        tx.prepare_cached(
            "DELETE FROM usage_program WHERE credential = ?1 AND identity = ?2 AND exe = ?3 AND parent = ?4",
        )?
        .execute([c, id, e, p])?;
    }
    for (c, id, dst) in &del.reach {
        tx.prepare_cached(
            "DELETE FROM reach WHERE credential = ?1 AND identity = ?2 AND destination = ?3",
        )?
        .execute([c, id, dst])?;
    }
    for (c, fp) in &del.fingerprints {
        tx.prepare_cached("DELETE FROM fingerprint WHERE credential = ?1 AND fingerprint = ?2")?
            .execute(params![c, fp])?;
    }
    for id in &del.changes {
        tx.prepare_cached("DELETE FROM change WHERE id = ?1")?
            .execute([id])?;
    }
    for (k, subject, identity) in &del.findings {
        tx.prepare_cached(
            "DELETE FROM finding WHERE kind = ?1 AND subject = ?2 AND identity = ?3",
        )?
        .execute(params![k.as_str(), subject, identity])?;
    }
    for id in &del.destinations {
        tx.prepare_cached("DELETE FROM destination WHERE id = ?1")?
            .execute([id])?;
    }
    for id in &d.identities {
        if let Some(n) = m.identities.get(*id) {
            tx.prepare_cached("INSERT OR IGNORE INTO identity (id, name) VALUES (?1, ?2)")?
                .execute(params![id, n])?;
        }
    }
    for id in &d.programs {
        if let Some(n) = m.programs.get(*id) {
            tx.prepare_cached("INSERT OR IGNORE INTO program (id, path) VALUES (?1, ?2)")?
                .execute(params![id, n])?;
        }
    }
    for id in &d.destinations {
        if let Some(x) = m.destinations.get(id) {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO destination (id, addr, port, name) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, x.addr, x.port, x.name])?;
        }
    }
    for id in &d.credentials {
        let Some(c) = m.credentials.get(id) else {
            continue;
        };
        let w = c.last_write.as_ref();
        tx.prepare_cached(
            "INSERT INTO credential (id, path, category, dev, ino, present, owner, owner_source,
                 fingerprint, mtime, first_seen, last_seen, last_used, uses, writes,
                 last_write_ts, last_write_identity, last_write_exe, last_write_uid, rotations,
                 last_rotation, contact, rotate_every, dropped_uses, dropped_reach)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)
             ON CONFLICT (id) DO UPDATE SET path = excluded.path, category = excluded.category,
                 dev = excluded.dev, ino = excluded.ino, present = excluded.present,
                 owner = excluded.owner, owner_source = excluded.owner_source,
                 fingerprint = excluded.fingerprint, mtime = excluded.mtime,
                 first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                 last_used = excluded.last_used, uses = excluded.uses, writes = excluded.writes,
                 last_write_ts = excluded.last_write_ts,
                 last_write_identity = excluded.last_write_identity,
                 last_write_exe = excluded.last_write_exe,
                 last_write_uid = excluded.last_write_uid, rotations = excluded.rotations,
                 last_rotation = excluded.last_rotation, contact = excluded.contact,
                 rotate_every = excluded.rotate_every, dropped_uses = excluded.dropped_uses,
                 dropped_reach = excluded.dropped_reach",
        )?
        .execute(params![
            c.id,
            c.path,
            c.category,
            i(c.dev),
            i(c.ino),
            c.present,
            c.owner,
            c.owner_source.map(OwnerSource::as_str),
            c.fingerprint,
            oi(c.mtime),
            i(c.first_seen),
            i(c.last_seen),
            oi(c.last_used),
            i(c.uses),
            i(c.writes),
            w.map(|w| i(w.ts)),
            w.map(|w| &w.identity),
            w.map(|w| &w.exe),
            w.map(|w| w.uid),
            i(c.rotations),
            oi(c.last_rotation),
            c.contact,
            oi(c.rotate_every),
            i(c.dropped_uses),
            i(c.dropped_reach),
        ])?;
        for n in &c.names {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO credential_name (credential, name) VALUES (?1, ?2)",
            )?
            .execute(params![c.id, n])?;
        }
    }
    for k in &d.usage {
        let Some(x) = m.usage.get(k) else { continue };
        tx.prepare_cached(
            "INSERT INTO usage (credential, identity, first_seen, last_seen, count,
                 owned, fingerprint, last_tgid, last_start, last_exe, last_user, last_uid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (credential, identity) DO UPDATE SET first_seen = excluded.first_seen,
                 last_seen = excluded.last_seen, count = excluded.count, owned = excluded.owned,
                 fingerprint = excluded.fingerprint, last_tgid = excluded.last_tgid,
                 last_start = excluded.last_start, last_exe = excluded.last_exe,
                 last_user = excluded.last_user, last_uid = excluded.last_uid",
        )?
        .execute(params![
            k.0,
            k.1,
            i(x.stat.first_seen),
            i(x.stat.last_seen),
            i(x.stat.count),
            x.owned,
            x.fingerprint,
            x.last_tgid,
            i(x.last_start),
            x.last_exe,
            x.last_user,
            x.last_uid
        ])?;
    }
    for k in &d.programs_of_usage {
        let Some(s) = m.programs_of_usage.get(k) else {
            continue;
        };
        tx.prepare_cached(
            "INSERT INTO usage_program (credential, identity, exe, parent, first_seen,
                 last_seen, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (credential, identity, exe, parent) DO UPDATE SET
                 first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                 count = excluded.count",
        )?
        .execute(params![
            k.0,
            k.1,
            k.2,
            k.3,
            i(s.first_seen),
            i(s.last_seen),
            i(s.count)
        ])?;
    }
    for k in &d.reach {
        let Some(s) = m.reach.get(k) else { continue };
        tx.prepare_cached(
            "INSERT INTO reach (credential, identity, destination, first_seen,
                 last_seen, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (credential, identity, destination) DO UPDATE SET
                 first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                 count = excluded.count",
        )?
        .execute(params![
            k.0,
            k.1,
            k.2,
            i(s.first_seen),
            i(s.last_seen),
            i(s.count)
        ])?;
    }
    for k in &d.fingerprints {
        let Some(f) = m.fingerprints.get(k) else {
            continue;
        };
        tx.prepare_cached(
            "INSERT INTO fingerprint (credential, fingerprint, first_seen, last_seen,
                 superseded) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (credential, fingerprint) DO UPDATE SET
                 first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                 superseded = excluded.superseded",
        )?
        .execute(params![
            k.0,
            k.1,
            i(f.first_seen),
            i(f.last_seen),
            oi(f.superseded)
        ])?;
    }
    for id in &d.changes {
        let Some(c) = m.changes.get(id) else { continue };
        let w = c.writer.as_ref();
        tx.prepare_cached(
            "INSERT OR REPLACE INTO change (id, credential, ts, kind, old_fingerprint,
                 new_fingerprint, old_ino, new_ino, writer_ts, writer_identity, writer_exe,
                 writer_uid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            c.id,
            c.credential,
            i(c.ts),
            c.kind.as_str(),
            c.old_fingerprint,
            c.new_fingerprint,
            oi(c.old_ino),
            oi(c.new_ino),
            w.map(|w| i(w.ts)),
            w.map(|w| &w.identity),
            w.map(|w| &w.exe),
            w.map(|w| w.uid),
        ])?;
    }
    for k in &d.findings {
        let Some(f) = m.findings.get(k) else { continue };
        tx.prepare_cached(
            "INSERT INTO finding (kind, subject, identity, credential, first_raised,
                 last_raised, raised, suppressed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (kind, subject, identity) DO UPDATE SET
                 credential = excluded.credential, first_raised = excluded.first_raised,
                 last_raised = excluded.last_raised, raised = excluded.raised,
                 suppressed = excluded.suppressed",
        )?
        .execute(params![
            k.0.as_str(),
            k.1,
            k.2,
            f.credential,
            i(f.first_raised),
            i(f.last_raised),
            i(f.raised),
            i(f.suppressed)
        ])?;
    }
    if d.dropped {
        tx.prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('dropped', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute([serde_json::to_string(&m.dropped).unwrap_or_default()])?;
    }
    Ok(())
}
